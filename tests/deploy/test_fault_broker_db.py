"""Faults of the broker and the database that lose or cut work, against real services: Redis
restarted without persistence (it loses the messages it had accepted), Redis with its
append-only file killed (SIGKILL), PostgreSQL's disk filling up during an import, PostgreSQL
stopped in the middle of an import.

The module's deployment is its own (tests/deploy/conftest.py's parts): a Redis it restarts as
it likes, a database on a small filesystem of its own, gunicorn, and a real worker when one is
needed. The outbox's work is sent again when not done 2 s after the broker took it (10 minutes
in production).

The small filesystem is a tmpfs mounted here (root, as in CI) and holding the database's
tablespace: the database's tables and indexes fill it, PostgreSQL's write-ahead log does not
(it stays on the cluster's disk). A full disk under the write-ahead log is not tested: there
PostgreSQL stops (PANIC) rather than refusing one transaction.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    BASE_DIR,
    Client,
    Postgres,
    RedisServer,
    Stack,
    start_web,
    wait_for,
)

RESEND_AFTER_SECONDS = 2
TABLESPACE = "immunoreg_small"
DATABASE = "immunoreg_broker_db"
SMALL_FILESYSTEM = "96m"
LEAKS = ("Traceback", "OperationalError", "psycopg", "127.0.0.1", "No space left", "could not")


# --- the module's services ----------------------------------------------------------------------


class Redis(RedisServer):
    """The conftest's Redis, with or without its append-only file, and killed at will."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.append_only = False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.program, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--dir", str(self.directory)),
                *("--appendonly", "yes" if self.append_only else "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, seconds=15, what="redis-server")

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)
        self.process = None


@dataclass
class FaultStack(Stack):
    small: Path = Path()

    def env(self, **overrides: str) -> dict:
        return super().env(
            IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS=str(RESEND_AFTER_SECONDS), **overrides
        )

    def fill_disk(self, *, leave: int) -> Path:
        """Fill the database's filesystem but `leave` bytes; the file that fills it."""
        filler = self.small / "filler"
        usage = shutil.disk_usage(self.small)
        assert usage.free > 1 << 20, (usage, subprocess.getoutput(f"du -sh {self.small}/*"))
        with filler.open("wb", buffering=0) as output:
            chunk = b"\0" * (1 << 20)
            while True:
                try:
                    output.write(chunk)  # up to the last free page, then ENOSPC
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
        os.truncate(filler, filler.stat().st_size - leave)
        assert shutil.disk_usage(self.small).free <= leave + 8192
        return filler


def mount_small_filesystem(postgres: Postgres) -> Path:
    mount = Path(tempfile.mkdtemp(prefix="immunoreg-small-"))
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FILESYSTEM},mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(
            "the disk-full test mounts a small tmpfs for PostgreSQL's tablespace: run the "
            f"deployment tests as root (as CI does): {result.stderr.strip()}"
        )
    tablespace = mount / "tablespace"
    tablespace.mkdir()
    if postgres.as_user:
        owner = pwd.getpwnam("postgres")
        os.chown(tablespace, owner.pw_uid, owner.pw_gid)
    return mount


@pytest.fixture(scope="module")
def faults(postgres, migrated_template, static_var_dir, tmp_path_factory) -> Iterator[FaultStack]:
    small = mount_small_filesystem(postgres)
    logs = tmp_path_factory.mktemp("broker-db-logs")
    redis = Redis(tmp_path_factory.mktemp("redis-data"))
    redis.start()
    with postgres.connect() as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")
        connection.execute(f"CREATE TABLESPACE {TABLESPACE} LOCATION '{small / 'tablespace'}'")
        connection.execute(
            f"CREATE DATABASE {DATABASE} TEMPLATE {migrated_template} TABLESPACE {TABLESPACE}"
        )
    stack = FaultStack(
        postgres=postgres,
        redis=redis,
        database=DATABASE,
        var_dir=static_var_dir,
        logs=logs,
        small=small,
    )
    stack.web, stack.port = start_web(stack.env(), logs / "gunicorn.log", workers=1, threads=4)
    try:
        yield stack
    finally:
        stack.web.stop()
        redis.stop()
        with contextlib.suppress(subprocess.CalledProcessError):  # started already
            postgres.start()  # if a test left it stopped
        with postgres.connect() as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            connection.execute(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")
        if subprocess.run(["umount", str(small)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(small)], capture_output=True)
        shutil.rmtree(small, ignore_errors=True)


# --- helpers ------------------------------------------------------------------------------------


def new_patient(stack: Stack, study_id: str) -> dict:
    [(site,)] = stack.query("SELECT id FROM registry_site WHERE code = 'AHP'")
    return {
        "site": site,
        "study_id": study_id,
        "sex": "F",
        "year_of_birth": "1990",
        "ph_status": "unknown",
        "diagnosis_date": "2023-01-10",
    }


def outbox_message(stack: Stack, study_id: str) -> dict:
    [row] = stack.query(
        "SELECT o.sent_at, o.sends, o.done_at, o.done_by FROM registry_outboxmessage o "
        "JOIN registry_patient p ON o.key = 'patient:' || p.id WHERE p.study_id = %s",
        study_id,
    )
    return dict(zip(("sent_at", "sends", "done_at", "done_by"), row, strict=True))


def cohort_csv(prefix: str, rows: int) -> bytes:
    output = io.StringIO()
    writer = csv.writer(output)
    writer.writerow(
        [
            *("study_id", "site", "sex", "year_of_birth", "arm", "treatment_start"),
            *("disease_burden", "relapse_status", "last_contact_date"),
        ]
    )
    for number in range(rows):
        writer.writerow(
            [
                *(f"{prefix}-{number:03d}", "AHP", "MF"[number % 2], 1970 + number % 30, "car_t"),
                *("2023-02-01", "morphologic", "first_relapse", "2023-08-01"),
            ]
        )
    return output.getvalue().encode()


def upload(client: Client, name: str, content: bytes):
    """The admin's import form, as a browser posts it (not a dry run)."""
    client.get("/admin/registry/importrun/upload/")
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.request(
        "POST",
        "/admin/registry/importrun/upload/",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=120,
    )


def patients(stack: Stack, prefix: str) -> int:
    return stack.query(
        "SELECT count(*) FROM registry_patient WHERE study_id LIKE %s", f"{prefix}-%"
    )[0][0]


def runs(stack: Stack, name: str) -> list[str]:
    return [
        outcome
        for (outcome,) in stack.query(
            "SELECT outcome FROM registry_importrun WHERE file_name = %s ORDER BY id", name
        )
    ]


def page_opens(client: Client, path: str) -> bool:
    """After a database restart a kept connection may be found dead once: ask again."""
    return client.get(path).status == 200


# --- Redis loses the messages it had accepted -------------------------------------------------------


def test_work_redis_lost_in_a_restart_is_reported_sent_again_and_done(faults):
    nurse = faults.client("nurse")
    assert nurse.post("/patients/new/", new_patient(faults, "LOST-1")).status == 302
    assert outbox_message(faults, "LOST-1")["sends"] == 1  # Redis took it; no worker runs yet

    faults.redis.stop()  # no persistence, as CI runs it: the queue is gone
    faults.redis.start()

    def reported() -> bool:
        report = nurse.get("/healthz").json()
        return report["status"] == "degraded" and report["outbox"]["overdue"] >= 1

    wait_for(reported, seconds=30, what="/healthz to report the lost message")
    assert nurse.get("/healthz").json()["broker"] == "ok"  # the broker is back: work is not

    worker = faults.worker("resend-worker")
    try:
        sent = int(faults.django("from registry import outbox\nprint(outbox.dispatch())"))
        assert sent >= 1
        wait_for(lambda: outbox_message(faults, "LOST-1")["done_at"], what="the message sent again")
    finally:
        worker.stop()

    message = outbox_message(faults, "LOST-1")
    assert message["sends"] == 2 and message["done_by"].endswith(f":{worker.popen.pid}")
    report = nurse.get("/healthz").json()
    assert report["status"] == "ok" and report["outbox"]["overdue"] == 0


# --- Redis with its append-only file, killed -------------------------------------------------------


def test_redis_with_its_append_only_file_killed_and_restarted_loses_nothing(faults):
    faults.redis.stop()
    faults.redis.append_only = True
    faults.redis.start()
    nurse = faults.client("nurse")
    assert nurse.post("/patients/new/", new_patient(faults, "AOF-1")).status == 302
    assert outbox_message(faults, "AOF-1")["sends"] == 1

    faults.redis.crash()  # SIGKILL: no shutdown, no final write
    faults.redis.start()

    worker = faults.worker("aof-worker")
    try:
        wait_for(lambda: outbox_message(faults, "AOF-1")["done_at"], what="the kept message")
    finally:
        worker.stop()
    assert outbox_message(faults, "AOF-1")["sends"] == 1  # done from Redis's own copy


# --- PostgreSQL's disk fills up ----------------------------------------------------------------------


def test_an_import_when_the_database_disk_is_full_gets_a_clean_503_saves_nothing_and_recovers(
    faults,
):
    manager = faults.client("datamanager")
    assert manager.get("/admin/registry/importrun/").status == 200
    content = cohort_csv("FULL", 200)

    # Room for the run's row, not for 200 patients: the disk fills in the import's transaction.
    filler = faults.fill_disk(leave=64 * 1024)
    try:
        answer = upload(manager, "full.csv", content)
    finally:
        filler.unlink()

    assert answer.status == 503, answer.text[:2000]
    assert "Nothing was saved" in answer.text
    for leak in LEAKS:
        assert leak not in answer.text
    assert patients(faults, "FULL") == 0
    log = (faults.postgres.root / "server.log").read_text(errors="replace")
    assert "No space left on device" in log  # it was the disk, not something else

    assert manager.get("/admin/registry/importrun/").status == 200
    assert runs(faults, "full.csv") == ["failed"]
    answer = upload(manager, "full.csv", content)
    assert answer.status == 200 and "Imported 200 patients" in answer.text
    assert patients(faults, "FULL") == 200
    assert runs(faults, "full.csv") == ["failed", "imported"]


# --- PostgreSQL stopped in the middle of an import -------------------------------------------------


def test_an_import_cut_by_a_database_stop_says_so_saves_nothing_and_its_run_is_closed(
    faults, tmp_path
):
    cohort = tmp_path / "cut.csv"
    cohort.write_bytes(cohort_csv("CUT", 400))
    command = [sys.executable, "manage.py", "import_cohort", str(cohort), "--user", "datamanager"]
    importing = subprocess.Popen(
        command, cwd=BASE_DIR, env=faults.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def in_the_import_transaction() -> bool:
        if importing.poll() is not None:
            pytest.fail(f"the import ended before the stop: {importing.communicate()}")
        return bool(
            runs(faults, "cut.csv")
            and faults.query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
                DATABASE,
            )[0][0]
        )

    wait_for(in_the_import_transaction, what="the import's transaction")
    faults.postgres.stop("fast")
    try:
        _, err = importing.communicate(timeout=60)
    finally:
        importing.kill()
        faults.postgres.start()

    stderr = err.decode()
    assert importing.returncode == 3, stderr[-3000:]
    assert "the database failed during the import" in stderr
    assert "nothing of the file was saved" in stderr
    for leak in LEAKS:
        assert leak not in stderr
    assert patients(faults, "CUT") == 0
    assert runs(faults, "cut.csv") == ["running"]  # the database was gone: it could not be told

    manager = faults.client("datamanager")
    wait_for(lambda: page_opens(manager, "/admin/registry/importrun/"), what="the runs' page")
    assert runs(faults, "cut.csv") == ["failed"]

    again = subprocess.run(command, cwd=BASE_DIR, env=faults.env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert patients(faults, "CUT") == 400
    assert runs(faults, "cut.csv") == ["failed", "imported"]
