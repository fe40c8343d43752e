"""registry.rows: model instances read by plain SQL are the ORM's, timestamps included, whose
time zone is read by psycopg's compiled loader on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from registry.models import User
from registry.rows import each_result, instances, read_cursor, select_sql, sent_statements
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


# --- Statements prepared once per connection (PostgreSQL) ---------------------------------------
def _read_by_name(users: list[User], where: str = "id = ANY(%s)") -> list[User]:
    with read_cursor() as cursor:
        [rows] = each_result(cursor, [(select_sql(User, where, "id"), [[u.pk for u in users]])])
    return instances(User, rows)


def _sent(captured) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


def _fields(users) -> list[dict]:
    return [{f.attname: getattr(u, f.attname) for f in User._meta.concrete_fields} for u in users]


def _held() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def test_a_statement_is_prepared_once_per_connection_then_executed_by_name():
    users = [UserFactory(last_login=moment) for moment in MOMENTS]
    where = "id = ANY(%s) AND 'prepared once' <> ''"  # a statement no other test sends
    with CaptureQueriesContext(connection) as first:
        assert _fields(_read_by_name(users, where)) == _fields(User.objects.order_by("id"))
    with CaptureQueriesContext(connection) as second:
        assert _fields(_read_by_name(users[:2], where)) == _fields(User.objects.order_by("id")[:2])
    [prepared, _orm], [executed, _orm_again] = _sent(first), _sent(second)
    assert prepared.startswith("PREPARE immunoreg_") and "; EXECUTE immunoreg_" in prepared
    assert executed.startswith("EXECUTE immunoreg_") and "PREPARE" not in executed
    name = executed.split()[1].split("(")[0]
    assert name in prepared and name in _held()


def test_several_statements_go_in_one_round_trip_with_their_results_in_order():
    users = [UserFactory() for _ in range(3)]
    by_id = select_sql(User, "id = %s", "id")
    statements = [(by_id, [users[2].pk]), (by_id, [-1]), (by_id, [users[0].pk])]
    for _ in range(2):  # preparing, then prepared
        with CaptureQueriesContext(connection) as sent, read_cursor() as cursor:
            found = [
                [user.pk for user in instances(User, rows)]
                for rows in each_result(cursor, statements)
            ]
        assert len(sent.captured_queries) == 1
        assert found == [[users[2].pk], [], [users[0].pk]]


def test_after_a_failed_round_trip_the_statements_are_prepared_again():
    """A round trip that failed may have kept some of its PREPAREs (a rollback does not undo
    them): the next one deallocates every statement first, prepares again and reads."""
    users = [UserFactory()]
    _read_by_name(users)
    broken = select_sql(User, "id = %s AND no_such_column = 1", "id")
    with pytest.raises(DatabaseError), transaction.atomic(), read_cursor() as cursor:
        list(each_result(cursor, [(select_sql(User, "id > %s", "id"), [0]), (broken, [1])]))
    with CaptureQueriesContext(connection) as sent:
        assert [user.pk for user in _read_by_name(users)] == [users[0].pk]
    assert _sent(sent)[0].startswith("DEALLOCATE ALL; PREPARE immunoreg_")
    assert len(_held()) == 1


@pytest.mark.django_db(transaction=True)
def test_statements_lost_by_the_connection_are_prepared_again_outside_a_transaction():
    """A pooler may deallocate a connection's statements: without an open transaction the round
    trip is sent again, once, with its PREPAREs; inside one the error is raised, and the next
    round trip prepares them."""
    users = [UserFactory()]
    _read_by_name(users)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with CaptureQueriesContext(connection) as sent:
        assert [user.pk for user in _read_by_name(users)] == [users[0].pk]
    assert [sql.split()[0] for sql in _sent(sent)] == ["EXECUTE", "DEALLOCATE"]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError), transaction.atomic():
        _read_by_name(users)
    assert [user.pk for user in _read_by_name(users)] == [users[0].pk]


def test_with_prepared_statements_off_the_statements_are_sent_as_they_are(settings):
    settings.IMMUNOREG_PREPARED_STATEMENTS = False
    users = [UserFactory(), UserFactory()]
    with CaptureQueriesContext(connection) as sent:
        assert [user.pk for user in _read_by_name(users)] == [user.pk for user in users]
    assert _sent(sent)[0].startswith("SELECT ")


def test_a_statement_with_a_literal_percent_is_not_prepared():
    with pytest.raises(ValueError, match="literal %"), read_cursor() as cursor:
        list(each_result(cursor, [(select_sql(User, "username LIKE 'a%%'", "id"), [])]))


def test_the_statements_sent_by_name_can_be_read_back(settings):
    users = [UserFactory()]
    where = "id = ANY(%s) AND 'read back' <> ''"
    for prepared in (True, False):
        settings.IMMUNOREG_PREPARED_STATEMENTS = prepared
        for _ in range(2):  # preparing, then prepared
            with CaptureQueriesContext(connection) as sent:
                _read_by_name(users, where)
            [statement] = sent_statements(_sent(sent)[0])
            expected = select_sql(User, where, "id")
            if prepared:
                assert statement == expected
            else:  # sent as it is, a log shows it with its values
                head = expected.partition(" WHERE ")[0]
                assert statement.startswith(head + " WHERE id = ANY(")
                assert statement.endswith("AND 'read back' <> '' ORDER BY id")
