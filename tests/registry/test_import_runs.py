"""An import cut by a database failure: a clear message, nothing saved, and its run closed as
failed (not "running" for ever) once the import pages are opened, while a live run is left be."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.utils import timezone

from registry import import_runs
from registry.cohort_file import importing
from registry.models import ImportRun, Patient
from tests.registry.test_cohort_file import ALIVE_CAR_T, DIED_OF_DISEASE, csv_bytes, run_command

pytestmark = pytest.mark.django_db
RUNS = "/admin/registry/importrun/"
UPLOAD = "/admin/registry/importrun/upload/"
SERVER = "server at 10.0.0.5"
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's"
)


@pytest.fixture
def database_lost(monkeypatch) -> None:
    """The database goes away in the middle of the import's transaction, and is still away
    when the import tries to record its failure (the connection is gone: its lock too)."""

    def cut(*args, **kwargs):
        raise OperationalError(f"could not receive data from {SERVER}")

    save = ImportRun.save

    def save_unless_failing(run: ImportRun, *args, **kwargs) -> None:
        if run.outcome == ImportRun.Outcome.FAILED and run.finished_at and not run.problems:
            import_runs.release(run)
            raise OperationalError(f"connection to {SERVER} lost")
        save(run, *args, **kwargs)

    monkeypatch.setattr(importing, "_import_table", cut)
    monkeypatch.setattr(ImportRun, "save", save_unless_failing)


def test_the_command_says_the_database_failed_and_nothing_was_saved(
    tmp_path, site, data_manager, database_lost
):
    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T]), "--user", "data_manager")

    assert status == 3, output
    assert "the database failed during the import" in output
    assert "nothing of the file was saved" in output
    assert SERVER not in output and "Traceback" not in output
    assert not Patient.objects.exists()


def test_the_upload_page_answers_a_clean_503_and_the_run_is_closed_as_failed_when_the_page_opens(
    client, site, data_manager, database_lost
):
    client.force_login(data_manager)
    client.raise_request_exception = False
    file = SimpleUploadedFile("cohort.csv", csv_bytes([ALIVE_CAR_T]), content_type="text/csv")

    answer = client.post(UPLOAD, {"file": file})

    assert answer.status_code == 503
    assert "Nothing was saved" in answer.content.decode()
    assert SERVER not in answer.content.decode()
    run = ImportRun.objects.get()
    assert run.outcome == ImportRun.Outcome.RUNNING  # the database could not be told
    known_gone(run)

    assert client.get(RUNS).status_code == 200

    run.refresh_from_db()
    assert run.outcome == ImportRun.Outcome.FAILED and run.finished_at is not None
    assert "stopped before it finished" in run.problems
    assert not Patient.objects.exists()


def test_a_run_left_running_long_ago_is_closed_as_failed(data_manager):
    run = import_runs.start(user=data_manager, file_name="cohort.csv")
    import_runs.release(run)
    ImportRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=13))

    assert import_runs.close_abandoned() == 1

    run.refresh_from_db()
    assert (run.outcome, run.problem_count) == (ImportRun.Outcome.FAILED, 1)


def test_a_run_whose_import_is_alive_is_left_running(data_manager):
    run = import_runs.start(user=data_manager, file_name="cohort.csv")
    import_runs.release(run)
    with another_connection_holding(run):
        assert import_runs.close_abandoned() == 0
        run.refresh_from_db()
        assert run.outcome == ImportRun.Outcome.RUNNING


@on_postgresql
def test_a_run_whose_connection_ended_is_closed_at_once(data_manager):
    run = import_runs.start(user=data_manager, file_name="cohort.csv")
    import_runs.release(run)  # the run is another process's:
    with another_connection_holding(run):
        pass  # which dies: its connection ends, its lock is freed

    assert import_runs.close_abandoned() == 1


def test_a_run_whose_import_committed_before_the_connection_was_lost_is_closed_as_imported(
    tmp_path, site, data_manager
):
    status, output = run_command(
        tmp_path, csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE]), "--user", "data_manager"
    )
    assert status == 0, output
    run = ImportRun.objects.get()
    ImportRun.objects.filter(pk=run.pk).update(
        outcome=ImportRun.Outcome.RUNNING, patients_created=0, finished_at=None
    )
    known_gone(run)

    assert import_runs.close_abandoned() == 1

    run.refresh_from_db()
    assert (run.outcome, run.patients_created) == (ImportRun.Outcome.IMPORTED, 2)


def known_gone(run: ImportRun) -> None:
    """On PostgreSQL a run whose connection let go is known to be gone at once; elsewhere only
    once it has been running for longer than import_runs.ABANDONED_AFTER."""
    if connection.vendor != "postgresql":
        ImportRun.objects.filter(pk=run.pk).update(
            started_at=timezone.now() - import_runs.ABANDONED_AFTER - timedelta(hours=1)
        )


class another_connection_holding:
    """The run's lock held by another session, as by the process importing it (PostgreSQL);
    elsewhere a run started now is taken for alive anyway."""

    def __init__(self, run: ImportRun) -> None:
        self.run = run
        self.other: psycopg.Connection | None = None

    def __enter__(self) -> None:
        if connection.vendor != "postgresql":
            return
        settings = connection.settings_dict
        self.other = psycopg.connect(
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or None,
            dbname=settings["NAME"],
            autocommit=True,
        )
        self.other.execute("SELECT pg_advisory_lock(%s, %s)", [import_runs.LOCK_CLASS, self.run.pk])
        [(self.backend,)] = self.other.execute("SELECT pg_backend_pid()").fetchall()

    def __exit__(self, *exc) -> None:
        if self.other is None:
            return
        self.other.close()
        # Its backend frees the lock as it exits, a moment after the connection is closed: wait
        # until PostgreSQL no longer lists it (the suite's other process may slow it down).
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # kept per transaction
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [self.backend])
                if cursor.fetchone() is None:
                    return
                time.sleep(0.02)
        raise AssertionError(f"the other session's backend {self.backend} did not end")


def test_the_nightly_task_closes_abandoned_runs_too(data_manager):
    from registry import tasks

    run = import_runs.start(user=data_manager, file_name="cohort.csv")
    import_runs.release(run)
    ImportRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=13))

    tasks.refresh_quality_queries()

    run.refresh_from_db()
    assert run.outcome == ImportRun.Outcome.FAILED
