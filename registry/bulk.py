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
        elif not (field.has_default() and callable(field.default)):
            defaults[field.attname] = field.get_default()
    if missing := [f.attname for f in fields if f.attname not in defaults]:
        raise ValueError(f"{model.__name__}: no constant default for {missing}")
    attnames = [field.attname for field in fields]
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
            copy.write_row((number, *[values[attname] for attname in attnames]))
    audit.created_rows_between(
        model, first, first + len(rows) - 1, user_id=user_id, reason=reason, when=when
    )
    return first
