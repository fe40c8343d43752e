"""A worker killed in the middle of an analytics computation, as in a container deployment
(issue #13): the claim is known dead by its lease, and the computation is done again within
minutes, without waiting for the broker to hand the lost task out again.

Production values here: the broker's visibility timeout of two hours (CELERY_VISIBILITY_TIMEOUT
7200, config/settings/base.py: the lost task is not delivered again during this test), a worker
on a host other than the web's (its own host name, as a container has; the web and this test
run on this machine's), and a container-like restart: a new worker with the same host name.
Shortened for this test only: the claim's lease, LEASE seconds (production: 180, renewed every
30 s), and the watchdog's period (production: every minute by beat; here its task is sent every
WATCH_EVERY seconds, as beat sends it). Before the lease, the web could tell a dead computation
only by the worker's host name and PID, and the computation came back after two hours.
"""

from __future__ import annotations

import time

import pytest
from celery import Celery
from kombu import Connection

from tests.deploy.conftest import Process, Stack, start_worker, wait_for
from tests.deploy.test_faults import HANGING_STATISTICS

PRODUCTION_VISIBILITY_TIMEOUT = "7200"
LEASE = 3  # seconds
WATCH_EVERY = 2  # seconds
HOST = "worker-container"

# The worker's container: its own host name (what socket.gethostname() gives in it).
IN_CONTAINER = f"""
import socket
socket.gethostname = lambda: {HOST!r}
"""

# The restarted worker draws no figures: not the point here, and 12 of them take seconds.
NO_FIGURES = """
import django
django.setup()
from analytics import services
services.figures_draw = lambda snapshot: None
"""

SEED = """
from registry import demo
from registry.models import Patient
if not Patient.objects.exists():
    demo.seed_scaled(20)
from analytics import services
print(services.snapshot_compute(site=None, trigger="command").pk)
"""


def worker_env(stack: Stack) -> dict:
    return stack.env(
        CELERY_VISIBILITY_TIMEOUT=PRODUCTION_VISIBILITY_TIMEOUT,
        ANALYTICS_LEASE_SECONDS=str(LEASE),
        HOSTNAME=HOST,
    )


def container_worker(stack: Stack, log: str, *, prelude: str = "") -> Process:
    """A worker named worker@worker-container, in its own container: restarted, same name."""
    return start_worker(
        worker_env(stack), stack.logs / log, name="worker", prelude=IN_CONTAINER + prelude
    )


def send_watchdog(stack: Stack) -> None:
    """What beat sends every minute (by name, as beat does)."""
    producer = Celery("beat-stand-in")
    try:
        with Connection(stack.redis.url) as connection:
            producer.send_task(
                "analytics.tasks.watch_computations", connection=connection, expires=60
            )
    finally:
        producer.close()


def claim_row(stack: Stack, pk: int) -> tuple:
    [row] = stack.query(
        "SELECT status, stage, error, worker, lease_expires_at > now() "
        "FROM analytics_snapshot WHERE id = %s",
        pk,
    )
    return row


def recomputed_after(stack: Stack, pk: int) -> list[tuple]:
    return stack.query(
        "SELECT id, status, trigger, requested_by_id, started_at FROM analytics_snapshot "
        "WHERE id > %s AND site_id IS NULL ORDER BY id",
        pk,
    )


def test_a_worker_killed_in_its_container_is_known_by_its_lease_and_its_work_is_done_again(
    stack,
):
    previous = int(stack.django(SEED).split()[-1])
    admin = stack.client("admin")  # the whole registry's analytics are the administrators'
    admin_id = stack.query("SELECT id FROM registry_user WHERE username = 'admin'")[0][0]

    doomed = container_worker(stack, "lease-doomed.log", prelude=HANGING_STATISTICS)
    try:
        answer = admin.post("/analytics/recompute/", {"scope": "registry"})
        assert answer.status == 302, answer.text[:2000]
        claimed = int(answer.headers["Location"].rstrip("/").split("/")[-1])
        wait_for(lambda: claim_row(stack, claimed)[1] == "statistics", what="the statistics")
        # While one statistics call lasts more than two leases, the worker keeps its claim.
        [(hanging_since,)] = stack.query("SELECT now()")
        wait_for(
            lambda: stack.query(
                "SELECT heartbeat_at > %s + make_interval(secs => %s) AND lease_expires_at > now()"
                " FROM analytics_snapshot WHERE id = %s",
                hanging_since,
                2 * LEASE,
                claimed,
            )[0][0],
            seconds=8 * LEASE,
            what="the lease renewed during a long statistics call",
        )
    finally:
        doomed.kill()  # SIGKILL to the worker's whole process group, mid-statistics
    [(killed_at,)] = stack.query("SELECT now()")
    status, stage, _, worker, _ = claim_row(stack, claimed)
    assert (status, stage) == ("running", "statistics")
    assert worker.startswith(f"{HOST}:")
    assert admin.get("/api/v1/analytics/latest/").json()["id"] == previous

    survivor = container_worker(stack, "lease-survivor.log", prelude=NO_FIGURES)  # restarted
    try:
        deadline = time.monotonic() + 60
        while not recomputed_after(stack, claimed):
            if time.monotonic() > deadline:
                pytest.fail(f"not computed again a minute after the kill:\n{survivor.output()}")
            send_watchdog(stack)
            time.sleep(WATCH_EVERY)
        [(again, status, trigger, requested_by, started_at)] = recomputed_after(stack, claimed)
        wait_for(lambda: claim_row(stack, again)[0] != "running", what="the recomputation")
    finally:
        survivor.stop()

    status, _, error, _, _ = claim_row(stack, claimed)
    assert status == "failed" and error.startswith("interrupted:"), error
    assert f"its worker ({HOST}:" in error and "stopped renewing its claim" in error
    again_status, _, again_error, again_worker, _ = claim_row(stack, again)
    assert again_status == "complete", again_error
    assert (trigger, requested_by) == ("on_demand", admin_id)  # done again for whoever asked
    assert again_worker.startswith(f"{HOST}:")
    # Within the lease, a restart and a few watchdog periods of the kill: not two hours.
    assert (started_at - killed_at).total_seconds() < 45
    assert admin.get("/api/v1/analytics/latest/").json()["id"] == again
    # The lost task itself was not delivered again (two hours): the watchdog did the work.
    assert "analytics.tasks.recompute_analytics[" not in survivor.output()
