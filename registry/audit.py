"""Audit rows written in bulk: django-simple-history's row for each created record, copied by
the database from the saved records in one statement (the cohort import, the data-quality
refresh), instead of one Python object and INSERT per record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, models

BATCH = 1000


def created_rows(
    model: type[models.Model], pks: list[Any], *, user_id: int | None, reason: str, when: datetime
) -> None:
    """The '+' (created) history rows of these saved records, with their current values."""
    history = model.history.model
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in history.tracked_fields)
    for start in range(0, len(pks), BATCH):
        batch = pks[start : start + BATCH]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(history._meta.db_table)} ({columns}, history_date, "
                "history_change_reason, history_type, history_user_id) "
                f"SELECT {columns}, %s, %s, '+', %s FROM {quote(model._meta.db_table)} "
                f"WHERE {quote(model._meta.pk.column)} IN ({', '.join(['%s'] * len(batch))})",
                [when, reason, user_id, *batch],
            )


def created_rows_between(
    model: type[models.Model],
    first: Any,
    last: Any,
    *,
    user_id: int | None,
    reason: str,
    when: datetime,
) -> None:
    """The '+' (created) history rows of the saved records whose keys run from first to last
    (a bulk load that took them in a row, registry.bulk), in one statement."""
    history = model.history.model
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in history.tracked_fields)
    pk = quote(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(history._meta.db_table)} ({columns}, history_date, "
            "history_change_reason, history_type, history_user_id) "
            f"SELECT {columns}, %s, %s, '+', %s FROM {quote(model._meta.db_table)} "
            f"WHERE {pk} BETWEEN %s AND %s ORDER BY {pk}",
            [when, reason, user_id, first, last],
        )
