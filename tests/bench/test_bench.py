"""The bench's own logic (issue #15): the pages' floor, the ratios and the regression flags.
No timing is asserted here; `make bench` measures."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import report
from registry.rows import sent_statements


@pytest.mark.urls("bench.floor")
def test_the_pages_floor_loads_the_session_and_the_user_and_nothing_else(client, nurse):
    client.force_login(nurse)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/bench/floor/")
    assert response.status_code == 200 and nurse.username in response.content.decode()
    statements = [s for q in queries.captured_queries for s in sent_statements(q["sql"])]
    tables = [statement.split(" FROM ")[1].split()[0].strip('"') for statement in statements]
    assert tables == ["django_session", "registry_user"]


@pytest.mark.urls("bench.floor")
def test_the_pages_floor_is_for_a_signed_in_user_only(client):
    assert client.get("/bench/floor/").status_code == 302


@pytest.mark.urls("bench.floor")
def test_the_registry_is_served_beside_the_floor(client, nurse):
    client.force_login(nurse)
    assert client.get("/patients/").status_code == 200


def _run(list_p95: float, floor_p95: float, ours: float = 1.0, r: float = 2.0) -> dict:
    return {
        "patients": 1000,
        "load": {"patient_list@8": {"p95_ms": list_p95}, "floor@8": {"p95_ms": floor_p95}},
        "r": {"immunoreg": {"km_logrank_cox": {"median_s": ours}}, "r": {"km_logrank_cox": {"median_s": r}}},
    }  # fmt: skip


def _ratio(name: str) -> tuple:
    return next(ratio for ratio in report.RATIOS if ratio[0] == name)


def test_a_figure_is_read_as_a_multiple_of_its_floor_and_judged_by_its_target():
    _name, figure, base, target, _unit = _ratio("patient_list p95 @8 / floor p95 @8")
    assert report.ratio_of(_run(90, 30), figure, base) == 3
    assert report.meets(3, target) is True and report.meets(3.01, target) is False
    _name, figure, base, target, _unit = _ratio("statistics / R: KM + log-rank + Cox")
    assert report.ratio_of(_run(90, 30, ours=1, r=2), figure, base) == 0.5
    assert report.meets(1.0, target) is False  # "< 1x R": as fast as R is not enough


def test_a_missing_or_zero_floor_gives_no_ratio():
    _name, figure, base, target, _unit = _ratio("patient_list p95 @8 / floor p95 @8")
    assert report.ratio_of(_run(90, 0), figure, base) is None
    assert report.ratio_of({"patients": 1000}, figure, base) is None
    assert report.meets(None, target) is None


@pytest.mark.parametrize("before, now, flagged", [(30, 37, True), (30, 35, False), (30, 20, False)])
def test_a_ratio_more_than_20_percent_worse_than_the_committed_run_is_flagged(before, now, flagged):
    # Ratios before / now: 3x / 3.7x (23% worse, flagged), 3x / 3.5x (17%), 3x / 2x (better).
    runs = {1000: _run(now * 3, 30)}
    committed = {1000: _run(before * 3, 30)}
    found = report.regressions(runs, committed)
    names = [item["ratio"] for item in found]
    assert ("patient_list p95 @8 / floor p95 @8" in names) is flagged


def test_the_committed_results_are_read_from_git():
    runs = report.committed_runs("HEAD")
    assert runs and all(run["patients"] == n for n, run in runs.items())
