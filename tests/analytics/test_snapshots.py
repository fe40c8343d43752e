"""Snapshots (SAP.md section 9): stored, immutable, one computation at a time, and a failed or
interrupted computation never replaces the latest complete one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import services
from analytics.models import ImmutableSnapshot, Snapshot, Stage, Status, Trigger
from analytics.stats import transplant
from registry import demo
from registry import services as registry_services
from registry.domain.vocabulary import Role
from registry.models import FollowUpContact, Site, Treatment
from tests import factories

pytestmark = pytest.mark.django_db

PATIENTS = 30  # spread by seed_scaled over five sites, the first 30 all at AHP


@pytest.fixture
def cohort(users):
    """A small synthetic registry (after the role users, whose names the demo users share)."""
    return demo.seed_scaled(PATIENTS)


def compute(site: Site | None = None, **options) -> Snapshot:
    return services.snapshot_compute(site=site, trigger=Trigger.COMMAND, **options)


def test_a_computation_stores_a_complete_snapshot_with_its_provenance(cohort):
    snapshot = compute()
    assert snapshot.status == Status.COMPLETE and snapshot.stage == Stage.DONE
    assert snapshot.fingerprint.startswith("sha256:") and len(snapshot.fingerprint) == 71
    assert snapshot.code_version and snapshot.output["code_version"] == snapshot.code_version
    assert snapshot.parameters == services.Parameters().as_dict()
    assert set(snapshot.timings) == {"frames_s", "stats_s"}
    assert snapshot.row_counts["analysis_set"] == PATIENTS
    assert snapshot.finished_at >= snapshot.started_at
    assert snapshot.output["data_fingerprint"] == snapshot.fingerprint


def test_the_counting_process_rows_are_built_once_per_kind_of_transplant(cohort, monkeypatch):
    built = []
    counting_process = transplant.counting_process

    def counted(*args, **kwargs):
        built.append(args)
        return counting_process(*args, **kwargs)

    monkeypatch.setattr(transplant, "counting_process", counted)
    compute()
    assert len(built) == 2  # any HSCT and UCBT; each arm's rows are a subset (issue #8)


def test_the_latest_complete_snapshot_is_the_newest_of_its_scope(cohort):
    first, second = compute(), compute()
    ahp = compute(Site.objects.get(code="AHP"))
    assert Snapshot.objects.latest_complete() == second != first
    assert Snapshot.objects.latest_complete(ahp.site) == ahp


def test_a_complete_snapshot_cannot_be_changed(cohort):
    snapshot = compute()
    snapshot.error = "edited"
    with pytest.raises(ImmutableSnapshot):
        snapshot.save()
    with pytest.raises(ImmutableSnapshot):
        Snapshot.objects.filter(pk=snapshot.pk).update(error="edited")
    assert Snapshot.objects.get(pk=snapshot.pk).error == ""


def test_a_complete_snapshot_cannot_be_deleted(cohort):
    snapshot = compute()
    with pytest.raises(ImmutableSnapshot):
        snapshot.delete()
    with pytest.raises(ImmutableSnapshot):
        Snapshot.objects.all().delete()
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_a_computation_failing_half_way_leaves_the_previous_snapshot_the_latest(
    cohort, monkeypatch
):
    previous = compute()

    def broken(*args, **kwargs):
        raise RuntimeError("the statistics broke half-way")

    monkeypatch.setattr(services.survival, "km_summary_days", broken)
    with pytest.raises(RuntimeError):
        compute()
    failed = Snapshot.objects.exclude(pk=previous.pk).get()
    assert failed.status == Status.FAILED and failed.output is None
    assert "the statistics broke half-way" in failed.error
    assert failed.fingerprint == previous.fingerprint  # it got as far as the statistics
    assert Snapshot.objects.latest_complete() == previous


def test_a_second_computation_while_one_runs_is_refused_with_the_time_it_started(cohort):
    running = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    since = timezone.localtime(running.started_at).strftime("%H:%M")
    with pytest.raises(services.ComputationRunning, match=f"already running since {since}"):
        services.snapshot_claim(site=Site.objects.get(code="AHP"), trigger=Trigger.ON_DEMAND)
    assert Snapshot.objects.count() == 1


def test_a_computation_silent_for_too_long_is_marked_interrupted(cohort):
    stuck = services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)
    long_ago = timezone.now() - services.STALE_AFTER - timedelta(minutes=1)
    Snapshot.objects.filter(pk=stuck.pk).update(heartbeat_at=long_ago)
    fresh = compute()
    stuck.refresh_from_db()
    assert stuck.status == Status.FAILED and stuck.error.startswith("interrupted")
    assert Snapshot.objects.latest_complete() == fresh


def test_a_computation_whose_process_died_on_this_host_is_marked_interrupted_at_once(cohort):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stuck = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    Snapshot.objects.filter(pk=stuck.pk).update(
        worker=f"{socket.gethostname()}:{dead}", stage=Stage.STATISTICS
    )
    compute()
    stuck.refresh_from_db()
    assert stuck.status == Status.FAILED and "ended before it finished" in stuck.error


def test_a_running_computation_in_a_live_process_is_not_interrupted(cohort):
    services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    assert services.fail_interrupted() == 0


def test_a_nightly_run_computes_the_whole_registry_and_every_site(cohort):
    snapshots = services.snapshots_refresh_all()
    scopes = [snapshot.site.code if snapshot.site else None for snapshot in snapshots]
    assert scopes == [None, *Site.objects.order_by("code").values_list("code", flat=True)]
    assert {snapshot.status for snapshot in snapshots} == {Status.COMPLETE}
    assert {snapshot.trigger for snapshot in snapshots} == {Trigger.NIGHTLY}


def test_a_nightly_run_skips_the_scopes_whose_data_did_not_change_and_records_it(cohort, nurse):
    first = {s.site_id: s for s in services.snapshots_refresh_all()}
    treatment = Treatment.objects.filter(patient__site__code="AHP").order_by("day0").first()
    registry_services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=treatment.day0 + timedelta(days=7),
        disease_status="unknown",
    )
    second = {s.site_id: s for s in services.snapshots_refresh_all()}
    ahp = Site.objects.get(code="AHP").pk
    changed = {None, ahp}
    for scope, snapshot in second.items():
        if scope in changed:
            assert snapshot.status == Status.COMPLETE
            assert snapshot.fingerprint != first[scope].fingerprint
        else:
            assert snapshot.status == Status.SKIPPED and snapshot.same_as == first[scope]
            assert snapshot.fingerprint == first[scope].fingerprint and snapshot.output is None
            assert Snapshot.objects.latest_complete(scope) == first[scope]


def test_an_empty_registry_gives_counts_of_zero_and_nulls_not_errors(db):
    output = compute().output
    assert output["populations"]["car_t"]["analysis"] == 0
    assert output["crs"]["any"]["p_fisher"] is None
    assert output["survival"]["pfs"]["car_t"]["median_months"] is None
    assert output["survival"]["pfs"]["cox"]["hr"] is None


def test_a_subgroup_with_an_empty_arm_reports_counts_and_null_statistics(administrator):
    site = factories.SiteFactory(code="SOLO")
    patient = factories.patient(user=administrator, site=site, study_id="SOLO-1")
    factories.treatment(
        user=administrator,
        patient=patient,
        crs_status="yes",
        disease_burden="mrd_only",
        bm_blast_pct=2,
    )
    output = compute(site).output
    mrd_only = output["subgroups"]["disease_burden"]["mrd_only"]["crs_any"]
    assert mrd_only["car_t"]["N"] == 1 and mrd_only["blinatumomab"]["N"] == 0
    assert mrd_only["p_fisher"] is None
    assert output["subgroups"]["disease_burden"]["cmh"]["crs_any"]["chi2"] is None


def test_the_output_is_strict_json_without_nan(cohort):
    output = compute().output
    text = json.dumps(output, allow_nan=False)
    assert json.loads(text) == output


def test_the_code_version_falls_back_to_the_package_version_without_git(monkeypatch, settings):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.delenv("IMMUNOREG_CODE_VERSION", raising=False)
    monkeypatch.setattr(services.subprocess, "run", no_git)
    services.code_version.cache_clear()
    try:
        assert services.code_version() == f"immunoreg {services.package_version()}"
        assert services.package_version() != "unknown"
    finally:
        services.code_version.cache_clear()


def test_a_user_sees_the_scopes_whose_sites_are_all_theirs(users, site, other_site):
    pi, administrator = users[Role.PI], users[Role.ADMINISTRATOR]
    assert services.scopes_visible_to(pi) == [site]
    assert services.scopes_visible_to(administrator) == [None, site, other_site]
    assert services.scopes_visible_to(users[Role.NURSE]) == []
    pi.sites.add(other_site)
    pi._site_ids = None
    assert services.scopes_visible_to(pi) == [None, site, other_site]


@pytest.mark.parametrize(
    "role, allowed",
    [(Role.NURSE, False), (Role.PI, False), (Role.DATA_MANAGER, True), (Role.ADMINISTRATOR, True)],
)
def test_only_data_managers_and_administrators_may_recompute(users, site, role, allowed):
    assert services.may_recompute(users[role], site) is allowed
