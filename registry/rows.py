"""Rows read by plain SQL and made into model instances as the ORM makes them.

For the reads on every page (the signed-in session and user, the patient page): compiling a
queryset costs more than the database's answer (docs/PERFORMANCE.md). A statement is the
model's concrete columns with a WHERE written by the caller; each row goes through the fields'
database converters and `Model.from_db`, as the ORM's compiler does.

The connection is looked up once per call: `django.db.connection` finds the thread's connection
again at each attribute read (an asgiref Local, some 2 µs), which, read per row and per
converter, was a seventh of the patient page's reads.

On PostgreSQL each statement is prepared once per connection and then executed by name
(`EXECUTE`), several in one round trip: parsing and planning these small statements again at
every request cost PostgreSQL more than running them (docs/PERFORMANCE.md, session 12).
`DATABASE_PREPARED_STATEMENTS=0` (settings.IMMUNOREG_PREPARED_STATEMENTS) sends them as plain
statements, for a pooler in transaction mode, where a connection's prepared statements do not
follow its next transaction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
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
    """The rows of each (statement, parameters): in one round trip on PostgreSQL, each statement
    prepared once per connection (parameters bound by the client as Django's psycopg cursor
    does); one statement at a time elsewhere (SQLite, `make demo`)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        for statement, params in statements:
            cursor.execute(statement, params)
            yield cursor.fetchall()
        return
    params = [param for _statement, params in statements for param in params]
    if not settings.IMMUNOREG_PREPARED_STATEMENTS:
        cursor.execute("; ".join(statement for statement, _params in statements), params)
    else:
        _execute_by_name(cursor, [statement for statement, _params in statements], params)
    yield cursor.fetchall()
    while cursor.nextset():
        yield cursor.fetchall()


# The statements prepared on each of this process's PostgreSQL connections (by psycopg
# connection, forgotten with it): their names; None after a failed round trip, whose PREPAREs
# may or may not have been kept (PREPARE is not undone by a rollback), so the next round trip
# deallocates them all first. Django never prepares statements of its own (psycopg's
# prepare_threshold is None), so these are the connection's only ones.
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# Each statement by its name, for reading what was sent (sent_statements).
_NAMED: dict[str, str] = {}


@functools.lru_cache(maxsize=512)
def _prepared(statement: str) -> tuple[str, str, str]:
    """The statement's name, its PREPARE (its %s numbered $1, $2...) and its EXECUTE (the
    parameters bound by the client, as %s)."""
    if "%%" in statement:
        raise ValueError("a statement to prepare must not hold a literal %")
    parts = statement.split("%s")
    name = "immunoreg_" + hashlib.blake2b(statement.encode(), digest_size=10).hexdigest()
    _NAMED[name] = statement
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
    arguments = f"({', '.join(['%s'] * (len(parts) - 1))})" if len(parts) > 1 else ""
    return name, f"PREPARE {name} AS {numbered}", f"EXECUTE {name}{arguments}"


def _execute_by_name(cursor, statements: list[str], params: list) -> None:
    """Send the statements by name (_by_name), the cursor left on the first EXECUTE's result
    (those of DEALLOCATE and PREPARE hold no rows). A connection that lost its prepared statements (deallocated by a pooler, say) is
    sent them again, once, where no transaction is open; otherwise the error is raised and the
    connection's statements are prepared again at its next round trip."""
    raw_connection = cursor.cursor.connection
    try:
        skipped = _send_by_name(cursor, raw_connection, statements, params)
    except DatabaseError as error:
        lost = getattr(error.__cause__, "sqlstate", None) == "26000"  # no such statement
        if not lost or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            raise
        skipped = _send_by_name(cursor, raw_connection, statements, params)
    for _ in range(skipped):
        cursor.nextset()


def _send_by_name(cursor, raw_connection, statements: list[str], params: list) -> int:
    sent, skipped = _by_name(raw_connection, statements)
    try:
        cursor.execute(sent, params)
    except DatabaseError:
        _PREPARED[raw_connection] = None  # which PREPAREs were kept is not known
        raise
    return skipped


def _by_name(raw_connection, statements: list[str]) -> tuple[str, int]:
    """What to send for these statements on this connection: an EXECUTE of each, after the
    PREPARE of those it does not hold yet; and how many results come before the first EXECUTE's.
    The names are recorded as prepared now: if the round trip fails, _send_by_name forgets them."""
    held = _PREPARED.get(raw_connection, set())
    head = []
    if held is None:
        head, held = ["DEALLOCATE ALL"], set()
    executes = []
    for statement in statements:
        name, prepare, execute = _prepared(statement)
        if name not in held:
            head.append(prepare)
            held.add(name)
        executes.append(execute)
    _PREPARED[raw_connection] = held
    return "; ".join(head + executes), len(head)


def sent_statements(sent: str) -> list[str]:
    """The statements behind one round trip of each_result as a query log shows it (each
    EXECUTE by name, after any PREPARE), in order: for reading a log or a test's queries."""
    statements = []
    for part in sent.split("; "):
        if part.startswith(("PREPARE immunoreg_", "DEALLOCATE ALL")):
            continue
        if part.startswith("EXECUTE immunoreg_"):
            part = _NAMED[part.split()[1].split("(")[0]]
        statements.append(part)
    return statements


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
