"""Beyond one process: a real Celery worker on Redis computes snapshots in the test database,
and a computation killed with SIGKILL half-way never replaces the latest complete snapshot.

The worker tests start their own throwaway redis-server and share the test database with the
worker, which needs PostgreSQL (CI sets DATABASE_URL): on SQLite's in-memory test database they
are skipped, except in CI, where they fail instead.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection
from kombu import Connection

from analytics import services
from analytics.figures import SHOWN
from analytics.models import (
    RenderingStatus,
    ReportRendering,
    Snapshot,
    SnapshotFigure,
    Status,
    Trigger,
)
from registry import demo
from registry.models import Site, User

BASE_DIR = Path(settings.BASE_DIR)
# A computation now draws its figures too (12 SVGs), and CI machines are shared: be patient.
WAIT_SECONDS = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, *, seconds: float = WAIT_SECONDS, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.2)


def child_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **overrides}
    for name in ("CELERY_TASK_ALWAYS_EAGER",):
        env.pop(name, None)
    return env


# --- a real worker on a throwaway Redis --------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is needed for the worker tests (README: system packages)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, seconds=10, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def worker_database_url() -> str:
    """The test database (test_<name>) as a URL for the worker process."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


def require_shared_database() -> None:
    if connection.vendor == "postgresql":
        return
    if os.environ.get("CI"):
        pytest.fail("In CI the worker tests run on PostgreSQL: set DATABASE_URL (see .ci/run).")
    pytest.skip("a worker process can share the test database only on PostgreSQL")


@pytest.fixture(scope="module")
def shared_database_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        require_shared_database()
        return worker_database_url()


@pytest.fixture(scope="module")
def worker_var_dir(tmp_path_factory) -> Path:
    """The worker's var/ (its media: the report archive)."""
    return tmp_path_factory.mktemp("worker-var")


@pytest.fixture(scope="module")
def worker(shared_database_url, redis_url, worker_var_dir, tmp_path_factory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "celery", "-A", "config", "worker"),
                *("--pool=solo", "--concurrency=1", "--loglevel=INFO"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("-n", f"analytics-test-{os.getpid()}@%h"),
            ],
            cwd=BASE_DIR,
            env=child_env(
                DATABASE_URL=shared_database_url,
                CELERY_BROKER_URL=redis_url,
                IMMUNOREG_VAR_DIR=str(worker_var_dir),
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "ready" in log.read_text() or process.poll() is not None, what="worker")
        if process.poll() is not None:
            pytest.fail(f"the worker did not start:\n{log.read_text()}")
        yield log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def send(redis_url: str, task: str, **kwargs) -> None:
    """Send as the web process does, through this broker (an explicit connection: Celery
    would prefer the CELERY_BROKER_URL of the environment, which CI points at another Redis)."""
    producer = Celery("analytics-tests")
    try:
        with Connection(redis_url) as connection:
            producer.send_task(task, kwargs=kwargs, connection=connection)
    finally:
        producer.close()


def finished(snapshot_id: int) -> bool:
    return Snapshot.objects.filter(pk=snapshot_id).exclude(status=Status.RUNNING).exists()


@pytest.mark.integration
def test_recompute_now_runs_on_a_real_worker_through_redis(worker, redis_url, transactional_db):
    demo.seed_scaled(20)
    claimed = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    send(redis_url, "analytics.tasks.recompute_analytics", snapshot_id=claimed.pk)
    wait_for(lambda: finished(claimed.pk), what=f"the worker (log: {worker})")
    figures = len(SHOWN) * len(settings.LANGUAGES)
    wait_for(
        lambda: SnapshotFigure.objects.filter(snapshot=claimed).count() == figures,
        what=f"the figures (log: {worker})",
    )
    claimed.refresh_from_db()
    assert claimed.status == Status.COMPLETE, claimed.error
    assert claimed.row_counts["analysis_set"] == 20
    assert not claimed.worker.endswith(f":{os.getpid()}")  # computed in the worker process
    assert Snapshot.objects.latest_complete() == claimed


@pytest.mark.integration
def test_the_nightly_task_runs_on_the_worker_for_every_scope(worker, redis_url, transactional_db):
    demo.seed_scaled(10)
    scopes = 1 + Site.objects.count()
    send(redis_url, "analytics.tasks.nightly_analytics")
    figures = scopes * len(SHOWN) * len(settings.LANGUAGES)
    wait_for(
        lambda: (
            Snapshot.objects.filter(status=Status.COMPLETE).count() == scopes
            and SnapshotFigure.objects.count() == figures
        ),
        what=f"the nightly run and its figures (log: {worker})",
    )
    assert set(Snapshot.objects.values_list("trigger", flat=True)) == {Trigger.NIGHTLY}


@pytest.mark.integration
def test_a_report_renders_on_a_real_worker_computing_the_analytics_first(
    worker, worker_var_dir, redis_url, transactional_db
):
    demo.seed_scaled(10)
    site = Site.objects.get(code="AHP")
    rendering = ReportRendering.objects.create(
        site=site,
        month="2024-10-01",
        language="zh-hans",
        requested_by=User.objects.get(username="pi"),
    )
    send(redis_url, "analytics.tasks.render_report", rendering_id=rendering.pk)
    wait_for(
        lambda: ReportRendering.objects.get(pk=rendering.pk).is_finished,
        what=f"the rendering (log: {worker})",
    )
    rendering.refresh_from_db()
    assert rendering.status == RenderingStatus.DONE, rendering.get_failure_display()
    snapshot = Snapshot.objects.latest_complete(site)
    assert rendering.report.snapshot == snapshot and snapshot.trigger == Trigger.ON_DEMAND
    assert snapshot.figures.filter(language="zh-hans").exists()
    pdf = worker_var_dir / "media" / rendering.report.pdf.name
    assert pdf.read_bytes().startswith(b"%PDF-")


# --- a computation killed half-way -------------------------------------------------------------

# A registry of 30 synthetic patients with one complete snapshot, in one process.
PREPARE = """
import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)
call_command("seed_demo", patients=30, verbosity=0)
call_command("compute_analytics", verbosity=0)
"""
# A computation whose statistics hang (Mantel-Byar never returns), to be killed while its
# snapshot is running at the statistics stage.
HANGING_COMPUTATION = """
import time
import django

django.setup()
from analytics import services
from analytics.stats import transplant


def hang(*args, **kwargs):
    print("statistics reached", flush=True)
    time.sleep(120)


transplant.mantel_byar = hang
services.snapshot_compute(site=None, trigger="command")
"""
# The latest complete snapshot, then a new computation (which must find the dead one's claim
# expired, its lease no longer renewed: 2 s here, LEASE), then the latest complete snapshot.
RECOMPUTE = """
import time
import django

django.setup()
from django.core.management import call_command
from django.utils import timezone
from analytics.models import Snapshot

print(Snapshot.objects.latest_complete().pk)
dead = Snapshot.objects.get(status="running")
time.sleep(max(0, (dead.lease_expires_at - timezone.now()).total_seconds() + 0.1))
call_command("compute_analytics", verbosity=0)
print(Snapshot.objects.latest_complete().pk)
"""


def python(code: str, env: dict[str, str]) -> list[str]:
    """Run Django code in a fresh process; its printed lines (the command's summary aside)."""
    lines = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=True,
    ).stdout.splitlines()
    return [line for line in lines if not line.startswith("Snapshot ")]


LEASE = "2"  # seconds (production: 180), renewed every third of a second while it computes


def snapshot_rows(database: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT id, status, error FROM analytics_snapshot ORDER BY id").fetchall()


def test_a_computation_killed_half_way_never_replaces_the_latest_snapshot(tmp_path):
    database = tmp_path / "registry.sqlite3"
    env = child_env(DATABASE_URL=f"sqlite:///{database}", ANALYTICS_LEASE_SECONDS=LEASE)
    env.pop("CELERY_BROKER_URL", None)
    python(PREPARE, env)

    hanging = subprocess.Popen(
        [sys.executable, "-c", HANGING_COMPUTATION],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([hanging.stdout], [], [], WAIT_SECONDS)
        assert ready and hanging.stdout.readline().strip() == "statistics reached", (
            hanging.stderr.read() if hanging.poll() is not None else "no output"
        )
    finally:
        os.kill(hanging.pid, signal.SIGKILL)
        hanging.wait()
    (first, *_), (killed, status, _) = snapshot_rows(database)
    assert status == Status.RUNNING

    latest_before, latest_after = python(RECOMPUTE, env)
    rows = {pk: (status, error) for pk, status, error in snapshot_rows(database)}
    assert latest_before == str(first)
    assert rows[killed][0] == Status.FAILED and "stopped renewing its claim" in rows[killed][1]
    assert latest_after == str(max(rows)) and rows[max(rows)][0] == Status.COMPLETE
