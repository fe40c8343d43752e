"""registry.rows: model instances read by plain SQL are the ORM's, timestamps included, whose
time zone is read by psycopg's compiled loader on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from registry.models import User
from registry.rows import instances, read_cursor, select_sql
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MOMENTS = [
    datetime(2024, 10, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1999, 12, 31, 16, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 30, 15, 5, tzinfo=UTC),
    datetime(2024, 3, 31, 1, 30, tzinfo=UTC) + timedelta(hours=8),
]


def read(users: list[User]) -> list[User]:
    with read_cursor() as cursor:
        cursor.execute(
            select_sql(User, f"id IN ({', '.join(['%s'] * len(users))})", "id"),
            [user.pk for user in users],
        )
        return instances(User, cursor.fetchall())


def test_timestamps_read_as_the_orm_reads_them():
    users = [UserFactory(last_login=moment, date_joined=moment) for moment in MOMENTS]
    fields = [f.attname for f in User._meta.concrete_fields]
    for plain, orm in zip(read(users), User.objects.order_by("id"), strict=True):
        assert {f: getattr(plain, f) for f in fields} == {f: getattr(orm, f) for f in fields}
        assert plain.last_login.tzinfo is orm.last_login.tzinfo
        assert plain.last_login.utcoffset() == timedelta(0)
    assert [u.last_login for u in read(users)] == MOMENTS


def test_a_missing_timestamp_reads_as_none():
    [user] = read([UserFactory(last_login=None)])
    assert user.last_login is None


def test_the_compiled_loader_reads_timestamps_on_postgresql():
    from psycopg import pq

    connection.ensure_connection()
    oid = connection.connection.adapters.types["timestamptz"].oid
    with read_cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(oid, pq.Format.TEXT)
    assert pq.__impl__ in ("c", "binary")  # requirements/base.txt: psycopg[binary]
    assert loader.__module__.startswith(("psycopg_binary", "psycopg_c"))
    with connection.cursor() as cursor:  # Django's own cursors keep Django's loader
        assert cursor.cursor.adapters.get_loader(oid, pq.Format.TEXT) is not loader


def test_where_the_time_zones_differ_djangos_loader_stays(monkeypatch):
    from zoneinfo import ZoneInfo

    from psycopg import pq

    connection.ensure_connection()
    oid = connection.connection.adapters.types["timestamptz"].oid
    monkeypatch.setattr(connection, "timezone", ZoneInfo("Asia/Shanghai"))
    with read_cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(oid, pq.Format.TEXT)
    assert not loader.__module__.startswith(("psycopg_binary", "psycopg_c"))
