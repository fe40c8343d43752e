"""Celery entry points of the registry: thin, each calls a service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from registry import import_runs, quality, selectors
from registry.clock import today
from registry.outbox import dispatch_outbox, run_outbox_message  # noqa: F401 (for the worker)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def refresh_quality_queries() -> int:
    """Nightly: open and close the queries that depend on the date (overdue, lost); and close
    the import runs left running by a process that is gone."""
    import_runs.close_abandoned()
    return quality.refresh_all(today=today())


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def warm_worklists() -> int:
    """After midnight: every site's worklist for the new day computed into the shared cache,
    before the first nurse opens it."""
    return selectors.warm_worklists(today=today())
