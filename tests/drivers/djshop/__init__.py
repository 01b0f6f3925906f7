"""A Django app for tests/drivers/django_shop.py."""
