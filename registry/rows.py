"""Rows read by plain SQL and made into model instances as the ORM makes them.

For the reads on every page (the signed-in session and user, the patient page): compiling a
queryset costs more than the database's answer (docs/PERFORMANCE.md). A statement is the
model's concrete columns with a WHERE written by the caller; each row goes through the fields'
database converters and `Model.from_db`, as the ORM's compiler does.

The connection is looked up once per call: `django.db.connection` finds the thread's connection
again at each attribute read (an asgiref Local, some 2 µs), which, read per row and per
converter, was a seventh of the patient page's reads.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model


@dataclass(frozen=True)
class _Table:
    """How rows of a model's table are read: its columns, its fields' attribute names, and the
    database converters of each column that has any (as the ORM's compiler applies them)."""

    table: str
    columns: str
    names: list[str]
    converters: list[tuple[int, Any, list]]


@functools.cache
def _table(model: type[Model], alias: str, vendor: str) -> _Table:
    """Computed once per model and database (the converters depend only on the field and the
    database's kind, not on the connection of the thread that asked first)."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    converters = []
    for index, model_field in enumerate(fields):
        column = model_field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((index, column, functions))
    return _Table(
        table=quote(model._meta.db_table),
        columns=", ".join(quote(f.column) for f in fields),
        names=[f.attname for f in fields],
        converters=converters,
    )


@contextlib.contextmanager
def read_cursor():
    """`connection.cursor()`, its timestamps with a time zone read by psycopg's compiled loader
    where that gives what Django's loader gives (the connection's time zone is Django's, UTC):
    Django's is a subclass in Python of psycopg's, which psycopg cannot swap for its compiled
    one, and took some 6 µs a value, a twentieth of the patient page (docs/PERFORMANCE.md)."""
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as wrapped:
        if connection.vendor == "postgresql" and settings.USE_TZ:
            from psycopg.types.datetime import TimestamptzLoader

            raw = wrapped.cursor
            if raw.connection.info.timezone == connection.timezone:
                raw.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield wrapped


def select_sql(model: type[Model], where: str, order_by: str) -> str:
    """SELECT of the model's concrete columns."""
    connection = connections[DEFAULT_DB_ALIAS]
    table = _table(model, connection.alias, connection.vendor)
    return f"SELECT {table.columns} FROM {table.table} WHERE {where} ORDER BY {order_by}"


def each_result(cursor, statements: list[tuple[str, list]]) -> Iterator[list[tuple]]:
    """The rows of each (statement, parameters): in one round trip where the database takes
    several statements at once (PostgreSQL, parameters bound by the client as Django's psycopg
    cursor does), one statement at a time elsewhere (SQLite, `make demo`)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        for statement, params in statements:
            cursor.execute(statement, params)
            yield cursor.fetchall()
        return
    cursor.execute(
        "; ".join(statement for statement, _params in statements),
        [param for _statement, params in statements for param in params],
    )
    yield cursor.fetchall()
    while cursor.nextset():
        yield cursor.fetchall()


def instances(model: type[Model], rows: list[tuple]) -> list[Model]:
    """Model instances from rows of its concrete fields' columns, as the ORM makes them."""
    connection = connections[DEFAULT_DB_ALIAS]
    alias = connection.alias
    table = _table(model, alias, connection.vendor)
    made = []
    for row in rows:
        values = list(row)
        for index, column, functions in table.converters:
            for convert in functions:
                values[index] = convert(values[index], column, connection)
        made.append(model.from_db(alias, table.names, values))
    return made
