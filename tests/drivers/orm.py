"""An application's PyMySQL and SQLAlchemy ORM workload, run against the
gate and against one MariaDB; tests/drivers.rs compares the lines this
prints. Usage: python3 orm.py PORT DATABASE TABLE"""
import datetime
import decimal
import sys

import pymysql
import sqlalchemy as sa
from sqlalchemy import orm

port, db, t = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def show(v):
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return f"{type(v).__name__}:{v}"


def line(label, rows):
    for r in rows:
        print(label, " | ".join(show(v) for v in r))
    print(label, f"rows={len(rows)}")


def value(i):
    name = None if i % 11 == 0 else (f"O'Brien \"{i}\" \\ x" if i % 7 == 0 else (f"ünïcødé-{i} ✓" if i % 5 == 0 else f"name-{i}"))
    amount = None if i % 13 == 0 else decimal.Decimal(f"{(i * 37) % 2000 - 1000}.{i % 100:02d}")
    born = datetime.date(1950 + i % 60, 1 + i % 12, 1 + i % 28)
    seen = datetime.datetime(2026, 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, (i % 1000) * 1000)
    dur = datetime.timedelta(hours=i % 100, minutes=i % 60, seconds=i % 59) * (-1 if i % 17 == 0 else 1)
    data = None if i % 9 == 0 else bytes([i % 256, 0xFF, 0, (i * 3) % 256])
    note = f"long text {i}; " * 2000 if i % 50 == 0 else f"note {i}"
    return (i * 37, name, amount, i * 0.25, born, seen, dur, data, i % 2, note)


# PyMySQL: a DB-API driver with client-side parameters, the text protocol.
conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="", database=db,
                       charset="utf8mb4", autocommit=False,
                       client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
cur = conn.cursor()
cur.execute(f"DELETE FROM {t}")
n = cur.executemany(
    f"INSERT INTO {t} (id, name, amount, ratio, born, seen, dur, data, flag, note) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    [value(i) for i in range(1, 201)])
conn.commit()
print("pymysql inserted", n)
for id_ in (37, 370, 407, 1850, 999999):
    cur.execute(f"SELECT * FROM {t} WHERE id = %s", (id_,))
    line(f"pymysql point {id_}", cur.fetchall())
cur.execute(f"SELECT id, name, amount FROM {t} WHERE amount > %s ORDER BY amount DESC, id LIMIT 20", ("100.00",))
line("pymysql top", cur.fetchall())
cur.execute(f"SELECT count(*), count(name), sum(amount), min(born), max(seen), avg(ratio), max(dur) FROM {t}")
line("pymysql agg", cur.fetchall())
cur.execute(f"SELECT * FROM {t} ORDER BY id")
for d in cur.description:
    print("pymysql meta", d)
rows = cur.fetchall()
line("pymysql sample", rows[::40])
print("pymysql all", len(rows), sum(len(str(r)) for r in rows))
cur.execute(f"SELECT id FROM {t} WHERE id IN %s ORDER BY id", ((74, 333, 1110, 7400),))
line("pymysql in", cur.fetchall())
cur.execute(f"UPDATE {t} SET name = %s WHERE id = %s", ("rolled back", 37))
print("pymysql tx updated", cur.rowcount)
conn.rollback()
cur.execute(f"UPDATE {t} SET amount = amount + 1 WHERE id IN (37, 74, 111)")
print("pymysql tx updated", cur.rowcount)
conn.commit()
cur.execute(f"SELECT id, name, amount FROM {t} WHERE id IN (37, 74, 111) ORDER BY id")
line("pymysql after tx", cur.fetchall())
print("pymysql unchanged", cur.execute(f"UPDATE {t} SET flag = flag WHERE id < 1000"))
print("pymysql changed", cur.execute(f"UPDATE {t} SET flag = 1 - flag WHERE id < 1000"))
conn.commit()
for k, sql in enumerate([f"INSERT INTO {t} (id) VALUES (37)", "SELEC 1", f"SELECT nope FROM {t}", "SELECT * FROM nowhere"]):
    try:
        cur.execute(sql)
        print("pymysql bad", k, "ran")
    except pymysql.MySQLError as e:
        print("pymysql bad", k, type(e).__name__, e.args[0])
conn.rollback()
cur.execute(f"SELECT count(*) FROM {t}; SELECT id, name FROM {t} WHERE id = 74")
line("pymysql multi 0", cur.fetchall())
cur.nextset()
line("pymysql multi 1", cur.fetchall())
ss = conn.cursor(pymysql.cursors.SSCursor)
ss.execute(f"SELECT id, note FROM {t} ORDER BY id")
print("pymysql unbuffered", sum(len(r[1]) for r in ss))
ss.close()
cur.execute(f"INSERT INTO {t}_auto (name) VALUES ('a')")
first = cur.lastrowid
cur.execute(f"INSERT INTO {t}_auto (name) VALUES ('b')")
print("pymysql auto", cur.lastrowid - first, conn.insert_id() - first)
conn.rollback()
conn.ping()
print("pymysql ping ok")
conn.close()

# SQLAlchemy's ORM over PyMySQL: what its dialect asks at connect, the
# statements its unit of work writes, eager loads and derived counts.
Base = orm.declarative_base()


class User(Base):
    __tablename__ = f"{t}_user"
    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    name = sa.Column(sa.String(64), nullable=False)
    joined = sa.Column(sa.DateTime)
    addresses = orm.relationship("Address", back_populates="user", order_by="Address.email",
                                 primaryjoin="User.id == foreign(Address.user_id)",
                                 cascade="all, delete-orphan")


class Address(Base):
    __tablename__ = f"{t}_address"
    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    user_id = sa.Column(sa.BigInteger, nullable=False)
    email = sa.Column(sa.String(128), nullable=False)
    user = orm.relationship("User", back_populates="addresses",
                            primaryjoin="User.id == foreign(Address.user_id)")


engine = sa.create_engine(f"mysql+pymysql://app:@127.0.0.1:{port}/{db}?charset=utf8mb4", future=True)
Base.metadata.create_all(engine)
with orm.Session(engine) as s:
    s.query(Address).delete()
    s.query(User).delete()
    s.commit()
    users = [User(name=f"user {i}", joined=datetime.datetime(2026, 1, 1 + i % 28, i % 24),
                  addresses=[Address(email=f"u{i}-{k}@example.com") for k in range(i % 4)])
             for i in range(1, 41)]
    s.add_all(users)
    s.commit()
    ids = sorted(u.id for u in users)
    print("orm ids", len(set(ids)), ids[-1] - ids[0])
    base = ids[0]
with orm.Session(engine) as s:
    print("orm users", s.query(User).count(), "addresses", s.query(Address).count())
    for u in s.query(User).options(orm.joinedload(User.addresses)).filter(User.name.like("user 1%")).order_by(User.name):
        print("orm joined", u.name, [a.email for a in u.addresses])
    for u in s.query(User).options(orm.selectinload(User.addresses)).order_by(User.id.desc()).limit(5):
        print("orm selectin", u.id - base, u.name, u.joined, len(u.addresses))
    q = s.query(User.name, sa.func.count(Address.id)).outerjoin(Address, User.id == Address.user_id) \
        .group_by(User.name).order_by(sa.func.count(Address.id).desc(), User.name).limit(8)
    for row in q:
        print("orm counted", tuple(row))
    u = s.query(User).filter_by(name="user 7").one()
    u.name = "user seven"
    u.addresses.append(Address(email="late@example.com"))
    s.commit()
    print("orm renamed", s.query(User).filter(User.name.like("%seven")).count(),
          [a.email for a in s.get(User, u.id).addresses])
    s.delete(s.query(User).filter_by(name="user 8").one())
    s.commit()
    print("orm after delete", s.query(User).count())
    try:
        s.add(User(id=u.id, name="duplicate"))
        s.commit()
    except sa.exc.IntegrityError as e:
        print("orm duplicate", e.orig.args[0])
        s.rollback()
    print("orm page", [r.name for r in s.query(User).order_by(User.name).offset(10).limit(5)])
    print("orm exists", s.query(sa.exists().where(User.name == "user 3")).scalar())
print("done")
