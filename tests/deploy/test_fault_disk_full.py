"""The report archive's disk fills up, with the real parts: gunicorn (production settings), a
Celery worker and Redis, MEDIA_ROOT on a real tmpfs of 16 KiB (tests/disk.py). A report asked
for on the reports page fails in plain words and leaves nothing in the archive; the monthly
run is retried later; once there is room, the next report is archived whole under its name.
The deployment is this module's own (its own database, Redis and media folder), so that the
full disk and the seeded registry meet no other test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    Client,
    Postgres,
    Process,
    RedisServer,
    app_env,
    run_django,
    start_web,
    start_worker,
    wait_for,
)
from tests.disk import FullDisk, full_disk

SEED = """
from registry import demo
from registry.models import Site
from analytics import services
demo.seed_scaled(20)
services.snapshot_compute(site=Site.objects.get(code="AHP"), trigger="command")
"""


@dataclass
class Deployment:
    postgres: Postgres
    database: str
    env: dict
    media: Path
    web: Process
    port: int
    worker: Process

    def rendering(self, pk: int) -> tuple[str, str, int | None]:
        [row] = self.postgres.query(
            self.database,
            "SELECT status, failure, report_id FROM analytics_reportrendering WHERE id = %s",
            pk,
        )
        return row

    def ask_for_a_report(self, client: Client) -> int:
        answer = client.post("/analytics/reports/render/", {"scope": "AHP", "language": "en"})
        assert answer.status == 302, answer.text[:2000]
        rendering = int(answer.headers["Location"].rpartition("rendering=")[2])
        wait_for(lambda: self.rendering(rendering)[0] in ("done", "failed"), what="the rendering")
        return rendering


@pytest.fixture(scope="module")
def deployment(postgres, migrated_template, static_var_dir, tmp_path_factory) -> Iterator:
    root = tmp_path_factory.mktemp("disk-full")
    var_dir = root / "var"
    var_dir.mkdir()
    (var_dir / "staticfiles").symlink_to(static_var_dir / "staticfiles")
    database = postgres.create_database("immunoreg_disk_full", template=migrated_template)
    redis = RedisServer()
    redis.start()
    env = app_env(database_url=postgres.url(database), broker_url=redis.url, var_dir=var_dir)
    run_django(SEED, env)
    web, port = start_web(env, root / "gunicorn.log", workers=1, threads=4)
    worker = start_worker(env, root / "worker.log", name="disk-full-worker")
    try:
        yield Deployment(postgres, database, env, var_dir / "media", web, port, worker)
    finally:
        worker.stop()
        web.stop()
        redis.stop()


@pytest.fixture
def disk(deployment) -> Iterator[FullDisk]:
    with full_disk(deployment.media) as full:
        yield full


def test_a_report_on_a_full_disk_fails_in_plain_words_and_the_next_one_is_archived_whole(
    deployment, disk
):
    pi = Client(deployment.port)
    pi.login("pi")

    failed = deployment.ask_for_a_report(pi)

    assert deployment.rendering(failed)[:2] == ("failed", "disk_full")
    page = pi.get(f"/analytics/reports/?rendering={failed}")
    assert page.status == 200 and "disk is full" in page.text
    for detail in ("Errno", "No space left", "OSError", str(deployment.media)):
        assert detail not in page.text
    assert "No space left on device" in deployment.worker.output()  # for the administrators
    assert disk.files() == []  # no truncated PDF, no temporary file

    disk.make_room()
    done = deployment.ask_for_a_report(pi)

    status, _, report = deployment.rendering(done)
    assert status == "done"
    [archived] = disk.files()
    assert re.fullmatch(rf"immunoreg-AHP-2024-10-en-{report}\.pdf", archived.name)
    download = pi.get(f"/analytics/reports/{report}/download/")
    assert download.status == 200 and download.text.startswith("%PDF-")
    assert 'filename="immunoreg-AHP-2024-10-en.pdf"' in download.headers["Content-Disposition"]


def test_the_monthly_run_on_a_full_disk_is_retried_later_with_nothing_left_behind(deployment, disk):
    def retried() -> bool:
        return any(
            "monthly_reports" in line and "Retry in" in line and "No space left" in line
            for line in deployment.worker.output().splitlines()
        )

    run_django(
        "from analytics.tasks import monthly_reports\nmonthly_reports.delay()", deployment.env
    )

    wait_for(retried, what="the monthly run's retry")
    assert disk.files() == []
    monthly = "SELECT count(*) FROM analytics_report WHERE trigger = 'monthly'"
    assert deployment.postgres.query(deployment.database, monthly) == [(0,)]
