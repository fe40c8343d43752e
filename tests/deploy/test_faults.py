"""Faults a hospital deployment meets, against real services: Redis stopped while a nurse saves,
a worker killed (SIGKILL) in the middle of an analytics computation, PostgreSQL restarted while
the app serves. The app is gunicorn with config.settings.production (tests/deploy/conftest.py).
"""

from __future__ import annotations

import threading
import time

from tests.deploy.conftest import Stack, wait_for


def site_id(stack: Stack, code: str = "AHP") -> int:
    return stack.query("SELECT id FROM registry_site WHERE code = %s", code)[0][0]


def new_patient_form(stack: Stack, study_id: str) -> dict:
    return {
        "site": site_id(stack),
        "study_id": study_id,
        "sex": "F",
        "year_of_birth": "1990",
        "ph_status": "unknown",
        "diagnosis_date": "2023-01-10",
    }


def patient_rows(stack: Stack, study_id: str) -> list[tuple]:
    return stack.query("SELECT id FROM registry_patient WHERE study_id = %s", study_id)


def outbox_row(stack: Stack, patient_id: int) -> tuple:
    rows = stack.query(
        "SELECT id, sent_at, attempts, last_error, done_at, done_by "
        "FROM registry_outboxmessage WHERE key = %s ORDER BY id DESC",
        f"patient:{patient_id}",
    )
    assert rows, f"no outbox message for patient {patient_id}"
    return rows[0]


# --- Redis stopped while a nurse saves a form -------------------------------------------------------


def test_a_form_saved_while_redis_is_down_is_kept_and_its_work_runs_once_redis_is_back(stack):
    nurse = stack.client("nurse")
    stack.redis.stop()
    try:
        started = time.monotonic()
        answer = nurse.post("/patients/new/", new_patient_form(stack, "REDIS-DOWN-1"))
        took = time.monotonic() - started
        health = nurse.get("/healthz")
    finally:
        stack.redis.start()

    assert answer.status == 302, answer.text[:2000]
    assert took < 10, f"the save waited {took:.1f} s for the broker"
    [(patient_id,)] = patient_rows(stack, "REDIS-DOWN-1")
    _, sent_at, attempts, last_error, done_at, _ = outbox_row(stack, patient_id)
    assert sent_at is None and done_at is None and attempts >= 1 and last_error
    assert health.status == 200  # the app serves: work waits in the outbox
    report = health.json()
    assert (report["status"], report["broker"]) == ("degraded", "unavailable")
    assert report["outbox"]["pending"] >= 1

    worker = stack.worker("outbox-worker")
    try:
        sent = int(stack.django("from registry import outbox\nprint(outbox.dispatch())"))
        assert sent >= 1
        wait_for(lambda: outbox_row(stack, patient_id)[4] is not None, what="the outbox task")
    finally:
        worker.stop()
    _, sent_at, _, last_error, done_at, done_by = outbox_row(stack, patient_id)
    assert sent_at is not None and last_error == ""
    assert done_by.endswith(f":{worker.popen.pid}"), "the task ran elsewhere than on the worker"
    assert "registry.tasks.run_outbox_message" in worker.output()


# --- a worker killed in the middle of an analytics computation --------------------------------------

# The worker to kill: a real Celery worker whose Mantel-Byar test hangs, so that it is surely
# killed in the middle of the statistics (the stage is read from the snapshot row).
HANGING_STATISTICS = """
import time
import django
django.setup()
from analytics.stats import transplant


def hang(*args, **kwargs):
    time.sleep(600)


transplant.mantel_byar = hang
"""

SEED = """
from registry import demo
demo.seed_scaled(20)
from analytics import services
print(services.snapshot_compute(site=None, trigger="command").pk)
"""


def snapshot(stack: Stack, pk: int) -> tuple[str, str, str]:
    [row] = stack.query("SELECT status, stage, error FROM analytics_snapshot WHERE id = %s", pk)
    return row


def test_a_worker_killed_mid_computation_leaves_the_last_snapshot_served_and_the_next_completes(
    stack,
):
    previous = int(stack.django(SEED).split()[-1])
    manager = stack.client("admin")  # the whole registry's analytics are the administrators'
    assert manager.get("/api/v1/analytics/latest/").json()["id"] == previous

    doomed = stack.worker("doomed-worker", prelude=HANGING_STATISTICS)
    try:
        answer = manager.post("/analytics/recompute/", {"scope": "registry"})
        assert answer.status == 302, answer.text[:2000]
        claimed = int(answer.headers["Location"].rstrip("/").split("/")[-1])
        wait_for(lambda: snapshot(stack, claimed)[1] == "statistics", what="the statistics")
    finally:
        doomed.kill()  # SIGKILL to the worker's whole process group, mid-statistics

    assert snapshot(stack, claimed)[0] == "running"
    served = manager.get("/api/v1/analytics/latest/")
    assert served.status == 200 and served.json()["id"] == previous
    page = manager.get("/analytics/scopes/registry/")
    assert page.status == 200

    # Late acks: the task was never acknowledged, so Redis hands it to the next worker (after
    # CELERY_VISIBILITY_TIMEOUT, 5 s here), which computes the same claimed snapshot.
    survivor = stack.worker("next-worker")
    try:
        wait_for(lambda: snapshot(stack, claimed)[0] != "running", what="the redelivered task")
    finally:
        survivor.stop()
    status, stage, error = snapshot(stack, claimed)
    assert (status, stage) == ("complete", "done"), error
    assert manager.get("/api/v1/analytics/latest/").json()["id"] == claimed
    complete_since = stack.query(
        "SELECT count(*) FROM analytics_snapshot WHERE id > %s AND status = 'complete'", previous
    )[0][0]
    assert complete_since == 1  # computed once, not once per delivery


# --- PostgreSQL restarted while the app serves --------------------------------------------------------


def test_during_a_database_restart_requests_get_a_clean_503_and_the_app_recovers_by_itself(stack):
    nurse = stack.client("nurse")
    assert nurse.get("/patients/").status == 200  # connections are open and kept
    form = new_patient_form(stack, "PG-DOWN-1")

    stack.postgres.stop("fast")
    try:
        page = nurse.get("/patients/")
        api = nurse.get("/api/v1/patients/")
        save = nurse.post("/patients/new/", form)
        health = nurse.get("/healthz")
    finally:
        stack.postgres.start()

    for answer in (page, api, save, health):
        assert answer.status == 503, answer.text[:2000]
        for leak in ("Traceback", "OperationalError", "psycopg", "127.0.0.1", "REDIS-DOWN"):
            assert leak not in answer.text
    assert "briefly unavailable" in page.text
    assert "detail" in api.json()
    assert health.json()["database"] == "unavailable"

    # The same gunicorn, not restarted: its kept connections are replaced as they are found dead.
    for _ in range(6):  # enough requests to reach every worker process and thread
        assert nurse.get("/patients/").status == 200
    assert nurse.get("/healthz").json()["database"] == "ok"
    assert patient_rows(stack, "PG-DOWN-1") == []  # the refused save left nothing
    assert nurse.post("/patients/new/", form).status == 302
    assert len(patient_rows(stack, "PG-DOWN-1")) == 1


def test_saves_cut_by_a_database_restart_are_whole_or_absent(stack):
    """Nurses keep saving while the database restarts: every save answered 302 is there in
    full (patient, its audit row, its outbox message), every other is absent: nothing partial."""
    nurse = stack.client("nurse")
    form = new_patient_form(stack, "")
    answers: dict[str, int] = {}
    stop = threading.Event()

    def keep_saving() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            study_id = f"CUT-{number:03d}"
            try:
                answers[study_id] = nurse.post(
                    "/patients/new/", form | {"study_id": study_id}, timeout=10
                ).status
            except OSError:
                answers[study_id] = 0

    saver = threading.Thread(target=keep_saving)
    saver.start()
    try:
        time.sleep(1.0)
        stack.postgres.stop("fast")
        time.sleep(1.0)
        stack.postgres.start()
        time.sleep(1.5)
    finally:
        stop.set()
        saver.join(timeout=30)

    assert set(answers.values()) <= {302, 503}, answers
    assert 503 in answers.values() and list(answers.values())[-1] == 302, answers
    saved = dict(
        stack.query(
            "SELECT p.study_id, "
            "(SELECT count(*) FROM registry_historicalpatient h WHERE h.id = p.id) "
            "+ (SELECT count(*) FROM registry_outboxmessage o WHERE o.key = 'patient:' || p.id) "
            "FROM registry_patient p WHERE p.study_id LIKE 'CUT-%%'"
        )
    )
    for study_id, status in answers.items():
        if status == 302:
            assert study_id in saved, f"{study_id} answered 302 but is not saved"
    for study_id, parts in saved.items():
        assert parts >= 2, f"{study_id} is saved without its audit row or outbox message"
