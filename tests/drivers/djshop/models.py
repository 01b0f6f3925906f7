"""An ordinary app's models: an author's books share the author's shard
(`drv_dj_book` is hashed on author_id, `drv_dj_author` on id)."""
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=64)
    email = models.EmailField(null=True)
    joined = models.DateTimeField()
    score = models.DecimalField(max_digits=8, decimal_places=2, default=0)

    class Meta:
        db_table = "drv_dj_author"


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=128)
    pages = models.IntegerField()
    published = models.DateField(null=True)

    class Meta:
        db_table = "drv_dj_book"
