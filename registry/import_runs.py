"""The bookkeeping of cohort import runs (registry.models.ImportRun): a run is "running" while a
live process imports; one whose process is gone is closed, whatever stopped it.

An import is one transaction, so a process killed or a database lost mid-import saves nothing;
but its run, written before that transaction, stayed "running" for ever. Now:

- On PostgreSQL the importing connection holds a session advisory lock named after the run from
  the moment the run is visible until it is finished. The database frees it when that
  connection ends, whether the process exited, was killed, or the database restarted. A run
  that is still "running" but whose lock is free was abandoned.
- Elsewhere (SQLite, the local demo) a run running for longer than ABANDONED_AFTER is taken
  for abandoned: no import runs that long.

`close_abandoned` closes such runs as failed (or, if the import did commit, as imported: the
connection can be lost after the commit, before the run was updated). It runs when the import
pages of the admin are opened and with the nightly queries refresh.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from registry.models import ImportRun, Patient

logger = logging.getLogger(__name__)

# The first key of the runs' advisory locks ("IMPR"); the second is the run's id.
LOCK_CLASS = 0x494D5052
ABANDONED_AFTER = timedelta(hours=12)
ABANDONED = (
    "the import stopped before it finished (its process ended or it lost the database): "
    "nothing of the file was saved"
)


def _locks() -> bool:
    return connection.vendor == "postgresql"


def start(**fields: Any) -> ImportRun:
    """Create a running run, held by this process until `release`."""
    with transaction.atomic(savepoint=False):  # one transaction; no savepoint if in one
        run = ImportRun.objects.create(**fields)
        if _locks():  # taken before the run is visible to anyone: never seen unheld
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_CLASS, run.pk])
    return run


def release(run: ImportRun) -> None:
    """Let go of the run (finished). A connection lost meanwhile has let go already."""
    if not _locks():
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, run.pk])
    except DatabaseError:
        pass


def _abandoned(run: ImportRun, now: datetime) -> bool:
    if not _locks():
        return now - run.started_at > ABANDONED_AFTER
    with connection.cursor() as cursor:  # freed when the closing transaction ends
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_CLASS, run.pk])
        return bool(cursor.fetchone()[0])


def close_abandoned(now: datetime | None = None) -> int:
    """Close the runs whose process is gone; how many were closed."""
    now = now or timezone.now()
    closed = 0
    for pk in ImportRun.objects.filter(outcome=ImportRun.Outcome.RUNNING).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            run = ImportRun.objects.select_for_update().filter(pk=pk).first()
            if run is None or run.outcome != ImportRun.Outcome.RUNNING:
                continue  # finished meanwhile
            if not _abandoned(run, now):
                continue
            created = (
                Patient.history.filter(
                    history_type="+",
                    history_change_reason__startswith=f"import of {run.file_name} (run {run.pk}) ",
                ).count()
                if not run.dry_run
                else 0
            )
            run.finished_at = now
            if created:
                run.outcome, run.patients_created = ImportRun.Outcome.IMPORTED, created
            else:
                run.outcome, run.problem_count = ImportRun.Outcome.FAILED, 1
                run.problems = ABANDONED
            run.save()
            logger.warning("import run %s was abandoned: closed as %s", run.pk, run.outcome)
            closed += 1
    return closed
