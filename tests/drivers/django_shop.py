"""An application's Django ORM workload over mysqlclient (libmariadb): its
tables made by `migrate --run-syncdb`, then the querysets an app writes.
Run against the gate and against one MariaDB; tests/drivers.rs compares
the lines this prints. Usage: python3 django_shop.py PORT DATABASE PREFIX"""
import datetime
import decimal
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import django  # noqa: E402
from django.conf import settings  # noqa: E402

port, db = int(sys.argv[1]), sys.argv[2]
settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.mysql", "HOST": "127.0.0.1", "PORT": port,
                           "NAME": db, "USER": "app", "PASSWORD": "", "OPTIONS": {"charset": "utf8mb4"}}},
    INSTALLED_APPS=["djshop"],
    USE_TZ=False,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection, transaction  # noqa: E402
from django.db.models import Avg, Count, F, Max, Min, Q, Sum  # noqa: E402

from djshop.models import Author, Book  # noqa: E402

call_command("migrate", run_syncdb=True, verbosity=0)
Book.objects.all().delete()
Author.objects.all().delete()

names = ["alpha", "Alpha", "beta", "éclair", "Eclair", "gamma", "delta", "O'Hara", "zeta"]
authors = []
for i in range(1, 31):
    authors.append(Author.objects.create(
        name=f"{names[i % len(names)]} {i}", email=None if i % 4 == 0 else f"a{i}@example.com",
        joined=datetime.datetime(2026, 1 + i % 12, 1 + i % 28, i % 24, i % 60),
        score=decimal.Decimal(f"{(i * 37) % 100}.{i % 100:02d}")))
base = authors[0].id
print("created", len(authors), authors[-1].id - base)
made = Book.objects.bulk_create([
    Book(author=authors[i % 30], title=f"book {i} of {authors[i % 30].name}", pages=(i * 53) % 700 + 20,
         published=None if i % 6 == 0 else datetime.date(2000 + i % 26, 1 + i % 12, 1 + i % 28))
    for i in range(90)])
# MariaDB's INSERT ... RETURNING gives bulk_create its ids, row by row.
print("books", Book.objects.count(), [b.id - made[0].id for b in made[:6]],
      all(Book.objects.get(id=b.id).title == b.title for b in made[::9]))


def show(label, rows):
    rows = list(rows)
    for r in rows:
        print(label, r)
    print(label, "rows", len(rows))


show("startswith", Author.objects.filter(name__startswith="a").order_by("name").values_list("name", "score"))
print("icontains", Author.objects.filter(name__icontains="ÉCL").count())
show("select_related", ((b.title, b.author.name, b.pages) for b in
                        Book.objects.select_related("author").filter(pages__gt=300).order_by("-pages", "title")[:10]))
show("prefetch", ((a.name, sorted(b.title for b in a.books.all())) for a in
                  Author.objects.prefetch_related("books").order_by("name")[:5]))
show("annotate", Author.objects.annotate(n=Count("books")).filter(n__gte=3).order_by("-n", "name")
     .values_list("name", "n")[:8])
print("aggregate", Book.objects.aggregate(Sum("pages"), Avg("pages"), Max("published"), Min("published")))
show("values", Book.objects.values("author__name").annotate(total=Sum("pages")).order_by("-total", "author__name")[:5])
print("dates", Author.objects.filter(joined__year=2026, joined__month=3).count(),
      Book.objects.filter(published__year__gte=2020).count())
print("q", Book.objects.filter(Q(pages__lt=100) | Q(title__contains="9")).exclude(published=None).count())
print("subquery", Author.objects.filter(id__in=Book.objects.filter(pages__gt=400).values("author_id")).count())
show("distinct", Book.objects.order_by("pages").values_list("pages", flat=True).distinct()[:5])
print("exists", Author.objects.filter(name="zeta 8").exists(), Author.objects.filter(name="nobody").exists())
print("first", Author.objects.order_by("name").first().name, Author.objects.order_by("name").last().name)
print("page", list(Author.objects.order_by("joined", "id").values_list("name", flat=True)[10:15]))
print("get", Author.objects.get(name="gamma 5").email)
print("update", Author.objects.filter(score__lt=30).update(score=F("score") + 1))
print("scores", Author.objects.aggregate(Sum("score")))
victim = Author.objects.get(name="beta 2")
print("delete", victim.delete()[0], Book.objects.count(), Author.objects.count())
try:
    with transaction.atomic():
        Author.objects.filter(name="alpha 10").update(email="outer@example.com")
        try:
            with transaction.atomic():
                Author.objects.filter(name="alpha 10").update(email="inner@example.com")
                raise ValueError("undo the inner block")
        except ValueError:
            pass
        print("inner undone", Author.objects.get(name="alpha 10").email)
        raise RuntimeError("undo everything")
except RuntimeError:
    pass
print("outer undone", Author.objects.get(name="alpha 10").email)
obj, made = Author.objects.get_or_create(name="new one", defaults={"joined": datetime.datetime(2026, 5, 5)})
print("get_or_create", made, obj.id - base, Author.objects.get_or_create(name="new one")[1])
obj, made = Author.objects.update_or_create(name="new one", defaults={"score": decimal.Decimal("77.70")})
print("update_or_create", made, Author.objects.get(name="new one").score)
print("iterator", sum(b.pages for b in Book.objects.order_by("id").iterator(chunk_size=7)))
try:
    with transaction.atomic():
        Author.objects.create(id=obj.id, name="duplicate", joined=datetime.datetime(2026, 1, 1))
except IntegrityError as e:
    print("integrity", e.args[0])
# What an app reaches for next: correlated subqueries, Exists, windows,
# unions, bulk_update's CASE, row locks, distinct counts, date truncation.
from django.db.models import Exists, OuterRef, Subquery, Window  # noqa: E402
from django.db.models.functions import Lower, RowNumber, TruncMonth  # noqa: E402

longest = Book.objects.filter(author=OuterRef("pk")).order_by("-pages", "id")
show("subquery_annotate", Author.objects.annotate(longest=Subquery(longest.values("title")[:1]))
     .order_by("name").values_list("name", "longest")[:6])
show("exists_filter", Author.objects.filter(Exists(Book.objects.filter(author=OuterRef("pk"), pages__gt=600)))
     .order_by("name").values_list("name", flat=True))
show("window", Book.objects.annotate(rank=Window(RowNumber(), partition_by=[F("author_id")], order_by=F("pages").desc()))
     .filter(pages__gt=650).order_by("title").values_list("title", "rank")[:6])
show("union", Author.objects.filter(name__startswith="a").values_list("name", flat=True)
     .union(Author.objects.filter(name__startswith="z").values_list("name", flat=True)).order_by("name"))
print("distinct_count", Book.objects.aggregate(n=Count("author", distinct=True), p=Count("pages", distinct=True)))
show("lower", Author.objects.annotate(l=Lower("name")).filter(l__startswith="e").order_by("l", "id").values_list("l", flat=True))
show("months", Author.objects.annotate(m=TruncMonth("joined")).values("m").annotate(n=Count("id")).order_by("m")[:4])
books = list(Book.objects.filter(pages__lt=150).order_by("id"))
for b in books:
    b.pages += 1000
print("bulk_update", Book.objects.bulk_update(books, ["pages"]), Book.objects.filter(pages__gt=1000).count())
with transaction.atomic():
    locked = list(Author.objects.select_for_update().filter(name__startswith="g").order_by("id"))
    print("for_update", [a.name for a in locked])
show("in_bulk", sorted((k - base, v.name) for k, v in Author.objects.in_bulk([base + 1, base + 5, base + 9]).items()))
print("defer", [a.name for a in Author.objects.defer("email").filter(id__in=[base, base + 2]).order_by("id")])
with connection.cursor() as c:
    c.execute("SELECT name, score FROM drv_dj_author WHERE score > %s ORDER BY score DESC, name LIMIT 3", [50])
    show("raw", c.fetchall())
print("done")
