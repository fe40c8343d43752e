"""Snapshots (SAP.md section 9): stored, immutable, one computation at a time, and a failed or
interrupted computation never replaces the latest complete one."""

from __future__ import annotations

import json
import os
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
from registry.models import FollowUpContact, Site, Treatment, User
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


# --- the claim's lease (issue #13): a dead computation is known by its lease, not host or PID ---


def dead_pid() -> int:
    return int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )


def taken_up(snapshot: Snapshot, *, worker: str, at) -> Snapshot:
    """As a worker takes a claim up: its stage, its host:pid and a lease from `at`."""
    Snapshot.objects.filter(pk=snapshot.pk).update(
        stage=Stage.STATISTICS,
        worker=worker,
        heartbeat_at=at,
        lease_expires_at=at + services.lease_length(),
    )
    snapshot.refresh_from_db()
    return snapshot


def test_a_claim_whose_lease_ran_out_is_interrupted_though_its_process_lives_on_this_host(site):
    now = timezone.now()
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    alive_here = f"{socket.gethostname()}:{os.getpid()}"  # a restarted container reused the PID
    claim = taken_up(claim, worker=alive_here, at=now)
    assert services.fail_interrupted(now=claim.lease_expires_at) == 0
    assert services.fail_interrupted(now=claim.lease_expires_at + timedelta(seconds=1)) == 1
    claim.refresh_from_db()
    assert claim.status == Status.FAILED and claim.was_interrupted
    assert alive_here in claim.error and "stopped renewing its claim" in claim.error
    assert "computing the statistics" in claim.error
    assert Snapshot.objects.latest_complete() is None


def test_a_claim_within_its_lease_is_not_interrupted_though_its_process_ended_on_this_host(site):
    now = timezone.now()
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    claim = taken_up(claim, worker=f"{socket.gethostname()}:{dead_pid()}", at=now)
    assert services.fail_interrupted(now=now + services.lease_length() / 2) == 0
    claim.refresh_from_db()
    assert claim.status == Status.RUNNING


def test_a_claim_no_worker_took_up_expires_after_the_queued_lease(site):
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    assert claim.lease_expires_at == claim.started_at + services.queued_lease_length()
    assert services.fail_interrupted(now=claim.lease_expires_at - timedelta(seconds=1)) == 0
    assert services.fail_interrupted(now=claim.lease_expires_at + timedelta(seconds=1)) == 1
    claim.refresh_from_db()
    assert claim.was_interrupted and "no worker took it up" in claim.error


def test_the_production_lease_is_minutes_and_renewed_six_times_within_it():
    from config.settings import base

    assert base.ANALYTICS_LEASE_SECONDS == 180 and base.ANALYTICS_QUEUED_LEASE_SECONDS == 600
    assert services.longest_computation() == timedelta(
        seconds=base.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    )


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now


def test_each_renewal_moves_the_lease_on_from_the_clock_and_keeps_the_claim(site):
    clock = Clock()
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    lease = services.Lease(claim.pk, clock=clock, length=timedelta(minutes=3))
    for _ in range(5):  # twenty minutes of a long computation, renewed every four
        clock.now += timedelta(minutes=4)
        assert lease.renew()
        assert services.fail_interrupted(now=clock.now + timedelta(minutes=2)) == 0
    claim.refresh_from_db()
    assert claim.lease_expires_at == clock.now + timedelta(minutes=3)
    assert claim.heartbeat_at == clock.now and claim.status == Status.RUNNING


def test_a_closed_claim_is_not_renewed_and_the_computation_learns_it_lost_it(site):
    clock = Clock()
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    lease = services.Lease(claim.pk, clock=clock)
    assert services.fail_interrupted(now=claim.lease_expires_at + timedelta(seconds=1)) == 1
    assert not lease.renew()
    with pytest.raises(services.ComputationLost):
        services.snapshot_run(claim)
    claim.refresh_from_db()
    assert claim.status == Status.FAILED and claim.was_interrupted


def test_a_computation_running_longer_than_the_visibility_timeout_is_no_longer_renewed(site):
    clock = Clock()
    claim = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    lease = services.Lease(claim.pk, clock=clock, give_up_after=timedelta(hours=2))
    clock.now += timedelta(hours=2)
    assert lease.renew()
    clock.now += timedelta(seconds=1)
    assert not lease.renew()
    claim.refresh_from_db()
    assert claim.lease_expires_at == clock.now - timedelta(seconds=1) + lease.length


@pytest.fixture
def no_figures(monkeypatch):
    """The watchdog's tests compute small registries and draw no figures (not their point)."""
    monkeypatch.setattr(services, "figures_draw", lambda snapshot: None)


def expire(snapshot: Snapshot) -> None:
    """The claim's worker died a lease ago."""
    past = timezone.now() - timedelta(seconds=1)
    Snapshot.objects.filter(pk=snapshot.pk).update(
        stage=Stage.STATISTICS, heartbeat_at=past, lease_expires_at=past
    )


def test_the_nightly_run_proceeds_once_the_lease_of_a_dead_computation_ran_out(site, no_figures):
    stuck = services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)
    with pytest.raises(services.ComputationRunning):
        services.snapshots_refresh_all()
    expire(stuck)
    snapshots = services.snapshots_refresh_all()
    stuck.refresh_from_db()
    assert stuck.was_interrupted
    assert {snapshot.status for snapshot in snapshots} == {Status.COMPLETE}
    assert Snapshot.objects.latest_complete() == snapshots[0]


def test_the_watchdog_computes_again_an_interrupted_scope_for_whoever_asked(
    site, data_manager, no_figures
):
    ahp = Site.objects.get(code="AHP")
    stuck = services.snapshot_claim(site=ahp, trigger=Trigger.ON_DEMAND, user=data_manager)
    assert services.computations_watch() == []  # its lease holds: nothing to do
    expire(stuck)
    [again] = services.computations_watch()
    stuck.refresh_from_db()
    assert stuck.was_interrupted
    assert (again.status, again.site, again.trigger) == (Status.COMPLETE, ahp, Trigger.ON_DEMAND)
    assert again.requested_by == data_manager
    assert services.computations_watch() == []  # done: nothing more


def test_the_watchdog_resumes_an_interrupted_nightly_run_for_every_scope(site, no_figures):
    stuck = services.snapshot_claim(site=Site.objects.get(code="AHP"), trigger=Trigger.NIGHTLY)
    expire(stuck)
    resumed = services.computations_watch()
    assert [s.site_id for s in resumed] == [
        None,
        *Site.objects.order_by("code").values_list("pk", flat=True),
    ]
    assert {s.trigger for s in resumed} == {Trigger.NIGHTLY}


def test_the_watchdog_waits_while_another_computation_holds_the_claim(site, no_figures):
    stuck = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    expire(stuck)
    services.fail_interrupted()
    other = services.snapshot_claim(site=Site.objects.get(code="AHP"), trigger=Trigger.COMMAND)
    assert services.computations_watch() == []
    other.refresh_from_db()
    assert other.status == Status.RUNNING


def test_a_scope_interrupted_three_times_in_a_row_is_left_for_a_person_to_look_at(site, no_figures):
    for _ in range(services.RECOVER_AT_MOST):
        expire(services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND))
        services.fail_interrupted()
    assert services.computations_watch() == []
    assert not Snapshot.objects.exclude(status=Status.FAILED).exists()


def test_a_late_delivery_of_an_interrupted_task_gives_what_the_watchdog_computed(site, no_figures):
    stuck = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    expire(stuck)
    [again] = services.computations_watch()
    # Two hours later (the visibility timeout) the broker hands the lost task out again.
    late = services.snapshot_recompute(trigger=Trigger.ON_DEMAND, snapshot_id=stuck.pk)
    assert late == again and Snapshot.objects.count() == 2


def test_opening_a_scope_whose_computation_died_starts_a_new_one_not_the_dead_one(
    site, users, monkeypatch
):
    queued = []
    monkeypatch.setattr(services.queue, "send", lambda name, **kwargs: queued.append(kwargs))
    administrator = users[Role.ADMINISTRATOR]
    dead = services.snapshot_claim(site=site, trigger=Trigger.ON_DEMAND, user=administrator)
    expire(dead)
    computing = services.scope_computation_request(user=administrator, site=site)
    dead.refresh_from_db()
    assert dead.was_interrupted
    assert computing != dead and computing.status == Status.RUNNING
    assert queued == [{"trigger": Trigger.ON_DEMAND, "snapshot_id": computing.pk}]


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
    pi = User.objects.get(pk=pi.pk)  # a new request: the user's sites are read again
    assert services.scopes_visible_to(pi) == [None, site, other_site]


@pytest.mark.parametrize(
    "role, allowed",
    [(Role.NURSE, False), (Role.PI, False), (Role.DATA_MANAGER, True), (Role.ADMINISTRATOR, True)],
)
def test_only_data_managers_and_administrators_may_recompute(users, site, role, allowed):
    assert services.may_recompute(users[role], site) is allowed
