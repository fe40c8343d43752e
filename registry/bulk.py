"""New records written in bulk with PostgreSQL's COPY, their audit rows included: the fast load
of `seed_demo --patients N` (issue #15: a million synthetic patients in minutes, not hours).

A COPY streams rows into a table without one INSERT (or one Python model object) per record.
The primary keys are taken from the table's own sequence beforehand, so that the caller knows
them (a treatment's patient) and the '+' history rows are copied from the saved rows by one
statement per table (registry.audit). PostgreSQL only; other databases use bulk_create.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, models

from registry import audit

Fields = dict[str, Any]


def tables_locked(models_: Iterable[type[models.Model]]) -> None:
    """Keep other writers out of these tables until the transaction ends, so that the keys
    `copy_created` takes from each sequence are a run of consecutive numbers nobody else takes;
    readers are not kept out."""
    quote = connection.ops.quote_name
    tables = ", ".join(quote(model._meta.db_table) for model in models_)
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")


def foreign_keys_dropped(models_: Iterable[type[models.Model]]) -> list[tuple[str, str, str]]:
    """Drop the foreign keys of these tables for a bulk load, inside its transaction; returns
    them as (table, name, definition) for `foreign_keys_added` once the rows are in.

    Each key is then checked by one query over the whole table instead of once per row, the
    checks of a million rows queued until the commit (PostgreSQL's advice for bulk loads,
    "Populating a Database"). Until the transaction ends nobody else reads these tables."""
    tables = [model._meta.db_table for model in models_]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s) "
            "ORDER BY 1, 2",
            [tables],
        )
        keys = cursor.fetchall()
        # The checks this transaction's earlier writes left for its commit (Django's foreign
        # keys are deferred) are run now: PostgreSQL alters no table with such checks pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table, name, _definition in keys:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {connection.ops.quote_name(name)}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys' mode again
    return keys


def foreign_keys_added(keys: list[tuple[str, str, str]]) -> None:
    """Add again the keys `foreign_keys_dropped` dropped, as they were; each checks every row
    (the transaction fails if a row refers to nothing)."""
    with connection.cursor() as cursor:
        for table, name, definition in keys:
            cursor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {connection.ops.quote_name(name)} {definition}"
            )


def tables_analyzed(models_: Iterable[type[models.Model]]) -> None:
    """Give the planner the tables' new statistics: loaded from empty, it would otherwise go on
    planning a scan of the whole table for a look-up by index (autovacuum comes later)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(quote(model._meta.db_table) for model in models_)}")


def _keys_taken(model: type[models.Model], count: int) -> int:
    """The first of `count` consecutive primary keys taken from the model's sequence."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), "
            "nextval(pg_get_serial_sequence(%s, %s)) + %s - 1)",
            [model._meta.db_table, model._meta.pk.column] * 2 + [count],
        )
        (last,) = cursor.fetchone()
    return last - count + 1


def copy_created(
    model: type[models.Model],
    rows: list[Fields],
    *,
    user_id: int | None,
    reason: str,
    when: datetime,
) -> int:
    """Save `rows` (field values by attname, foreign keys as IDs) as new records of `model`,
    each with its '+' history row by `user_id` with `reason`; a field left out takes its
    default, as a model object would, and the time stamps are `when`. Call inside a transaction
    that holds `tables_locked()`. Returns the first primary key: row i gets first + i."""
    if not rows:
        return 0
    pk = model._meta.pk
    fields = [field for field in model._meta.concrete_fields if field is not pk]
    defaults = {}
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            defaults[field.attname] = when
        elif not (field.has_default() and callable(field.default)) or field.default in (
            dict,
            list,
        ):
            # A constant, or an empty JSON value: the same for every row (a callable such as
            # a token maker must be given by the rows).
            defaults[field.attname] = field.get_default()
    given = set(rows[0])
    if missing := [
        f.attname for f in fields if f.attname not in defaults and f.attname not in given
    ]:
        raise ValueError(f"{model.__name__}: no constant default for {missing}")
    attnames = [field.attname for field in fields]
    json_fields = {f.attname: f for f in fields if isinstance(f, models.JSONField)}
    if unknown := set(rows[0]) - set(attnames):
        raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
    first = _keys_taken(model, len(rows))
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in [pk.column, *(f.column for f in fields)])
    table = quote(model._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for number, row in enumerate(rows, start=first):
            values = defaults | row
            for attname, field in json_fields.items():  # JSON as the database takes it
                values[attname] = field.get_db_prep_value(values[attname], connection)
            copy.write_row((number, *[values[attname] for attname in attnames]))
    audit.created_rows_between(
        model, first, first + len(rows) - 1, user_id=user_id, reason=reason, when=when
    )
    return first
