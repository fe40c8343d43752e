"""The analytics pages: who sees which scope, the study's tables and plots from the latest
snapshot, and "recompute now" with its progress and outcome."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics import figures, services, tasks, views
from analytics.models import Snapshot, Stage, Status, Trigger
from config.celery import app as celery_app
from registry import demo
from registry.domain.vocabulary import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(monkeypatch):
    """Run tasks in this process even where CI configures a broker: these tests are about the
    flow around the task (test_integration.py sends tasks to a real worker)."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture(autouse=True)
def no_queued_computation_remembered():
    """The cache remembers a queued first computation for a while: not from another test."""
    cache.clear()


@pytest.fixture
def cohort(users):
    return demo.seed_scaled(30)


@pytest.fixture
def snapshots(cohort, site):
    """The latest complete snapshots of the whole registry and of AHP."""
    return {
        scope: services.snapshot_compute(
            site=None if scope == "registry" else site, trigger=Trigger.COMMAND
        )
        for scope in ("registry", site.code)
    }


def scope_url(scope: str) -> str:
    return reverse("analytics:scope", args=[scope])


def page(client, user, url: str, **params):
    client.force_login(user)
    return client.get(url, params)


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(reverse("analytics:index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    "url",
    [reverse("analytics:index"), reverse("analytics:recompute"), scope_url("AHP")],
)
def test_a_nurse_is_refused_every_analytics_page(client, nurse, url):
    assert page(client, nurse, url).status_code == 403


def test_a_pi_sees_their_sites_scope_but_not_the_whole_registry_or_another_site(
    client, users, snapshots, other_site
):
    pi = users[Role.PI]
    index = page(client, pi, reverse("analytics:index")).content.decode()
    assert scope_url("AHP") in index and scope_url("registry") not in index
    assert page(client, pi, scope_url("registry")).status_code == 403
    assert page(client, pi, scope_url(other_site.code)).status_code == 404


def test_an_administrator_sees_the_whole_registry(client, administrator, snapshots):
    response = page(client, administrator, scope_url("registry"))
    assert response.status_code == 200
    assert snapshots["registry"].fingerprint in response.content.decode()


def test_the_scope_page_shows_the_latest_snapshot_with_its_date_and_fingerprint(
    client, users, snapshots, site
):
    response = page(client, users[Role.PI], scope_url(site.code))
    html = response.content.decode()
    snapshot = snapshots[site.code]
    assert snapshot.fingerprint in html and snapshot.code_version in html
    assert snapshot.finished_at.astimezone().strftime("%Y-%m-%d") in html
    for key in [
        "populations",
        "crs",
        "icans",
        "response",
        "subgroups-disease_burden",
        "subgroups-relapse_group",
        "survival-pfs",
        "survival-os",
        "transplant-any_hsct",
        "transplant-ucbt",
    ]:
        assert f'data-testid="table-{key}"' in html


def test_the_naive_transplant_test_is_labelled_biased_beside_the_correct_ones(
    client, users, snapshots, site
):
    html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    assert "Naive log-rank p (BIASED: immortal time)" in html
    for correct in ("Time-dependent Cox", "Mantel-Byar", "Landmark at day 90"):
        assert correct in html


def test_the_tables_show_n_over_N_from_the_snapshot(client, users, snapshots, site):
    output = snapshots[site.code].output
    crs_any = output["crs"]["any"]["car_t"]
    html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    assert f"{crs_any['n']}/{crs_any['N']} ({100 * crs_any['proportion']:.1f}%)" in html


def test_a_newer_failed_computation_does_not_change_what_the_page_shows(
    client, users, snapshots, site, monkeypatch
):
    monkeypatch.setattr(services.survival, "logrank", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    assert snapshots[site.code].fingerprint in html
    assert Snapshot.objects.filter(status=Status.FAILED).count() == 1


def test_a_scope_never_computed_is_computed_when_a_pi_first_opens_it(
    client, users, cohort, site, eager
):
    client.force_login(users[Role.PI])
    response = client.get(scope_url(site.code), follow=True)
    snapshot = Snapshot.objects.latest_complete(site)
    assert snapshot is not None and snapshot.requested_by == users[Role.PI]
    html = response.content.decode()
    assert snapshot.fingerprint in html and 'data-testid="no-snapshot"' not in html


def test_a_scope_computing_now_shows_its_progress_and_says_the_results_will_appear(
    client, users, cohort, site, monkeypatch
):
    sent = []
    monkeypatch.setattr(tasks.recompute_analytics, "delay", lambda **kw: sent.append(kw))
    html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    running = Snapshot.objects.get(status=Status.RUNNING)
    assert sent == [{"trigger": Trigger.ON_DEMAND, "snapshot_id": running.pk}]
    assert 'data-testid="no-snapshot"' in html and "being computed now" in html
    assert reverse("analytics:computation", args=[running.pk]) in html  # polled
    page(client, users[Role.PI], scope_url(site.code))
    assert len(sent) == 1  # a reload follows the same computation


def test_a_scope_opened_while_another_computes_is_queued_once_for_when_it_is_free(
    client, users, cohort, site, monkeypatch
):
    sent = []
    monkeypatch.setattr(tasks.compute_missing_scope, "delay", lambda **kw: sent.append(kw))
    services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)
    for _ in range(2):
        html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    assert sent == [{"site_code": site.code, "user_id": users[Role.PI].pk}]
    assert "nightly run makes it at the latest" in html


def test_the_scope_page_takes_a_fixed_number_of_queries(
    client, users, snapshots, site, django_assert_num_queries
):
    pi = users[Role.PI]
    client.force_login(pi)
    client.get(scope_url(site.code))
    with django_assert_num_queries(5):
        client.get(scope_url(site.code))


def test_the_kaplan_meier_plot_is_svg_with_the_numbers_at_risk(client, users, snapshots, site):
    snapshot = snapshots[site.code]
    url = reverse("analytics:figure", args=[snapshot.pk, "pfs"])
    response = page(client, users[Role.PI], url)
    svg = response.content.decode()
    assert response["Content-Type"].startswith("image/svg+xml")
    assert "Number at risk" in svg and "Progression-free survival" in svg
    for arm in ("blinatumomab", "car_t"):
        assert f">{snapshot.output['survival']['pfs'][arm]['at_risk']['0']}<" in svg
    in_page = reverse("analytics:figure", args=[snapshot.pk, "en", "pfs"])
    assert in_page in page(client, users[Role.PI], scope_url(site.code)).content.decode()


def test_a_simon_makuch_plot_is_served_for_each_arm(client, users, snapshots, site):
    url = reverse("analytics:figure", args=[snapshots[site.code].pk, "sm-ucbt-car_t"])
    svg = page(client, users[Role.PI], url).content.decode()
    assert "Simon-Makuch" in svg and "Number at risk" in svg


def test_a_figure_of_a_scope_the_user_may_not_see_is_refused(client, users, snapshots):
    url = reverse("analytics:figure", args=[snapshots["registry"].pk, "pfs"])
    assert page(client, users[Role.PI], url).status_code == 403
    unknown = reverse("analytics:figure", args=[snapshots["registry"].pk, "nope"])
    assert page(client, users[Role.ADMINISTRATOR], unknown).status_code == 404


def test_a_data_manager_recomputes_now_and_sees_the_outcome(
    client, data_manager, cohort, site, eager
):
    client.force_login(data_manager)
    response = client.post(reverse("analytics:recompute"), {"scope": site.code}, follow=True)
    snapshot = Snapshot.objects.get()
    assert response.redirect_chain[-1][0] == reverse("analytics:computation", args=[snapshot.pk])
    html = response.content.decode()
    assert snapshot.status == Status.COMPLETE and snapshot.requested_by == data_manager
    assert snapshot.fingerprint in html and scope_url(site.code) in html


def test_a_pi_may_not_recompute(client, users, cohort, site):
    client.force_login(users[Role.PI])
    assert client.get(reverse("analytics:recompute")).status_code == 403
    assert client.post(reverse("analytics:recompute"), {"scope": site.code}).status_code == 403
    assert not Snapshot.objects.exists()


def test_a_data_manager_may_not_recompute_a_scope_that_is_not_theirs(client, data_manager, cohort):
    client.force_login(data_manager)
    response = client.post(reverse("analytics:recompute"), {"scope": "registry"})
    assert response.status_code == 403


def test_recompute_while_one_runs_is_told_so_and_nothing_is_queued(
    client, data_manager, cohort, site, monkeypatch
):
    queued = []
    monkeypatch.setattr(tasks.recompute_analytics, "delay", lambda **kw: queued.append(kw))
    running = services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)
    client.force_login(data_manager)
    response = client.post(reverse("analytics:recompute"), {"scope": site.code}, follow=True)
    html = response.content.decode()
    assert "already running since" in html and 'data-testid="running"' not in html
    assert queued == [] and list(Snapshot.objects.all()) == [running]


def test_the_progress_polls_while_running_and_stops_when_done(client, data_manager, cohort, site):
    snapshot = services.snapshot_claim(site=site, trigger=Trigger.ON_DEMAND, user=data_manager)
    Snapshot.objects.filter(pk=snapshot.pk).update(stage=Stage.STATISTICS)
    url = reverse("analytics:computation", args=[snapshot.pk])
    client.force_login(data_manager)
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" in partial and "Computing the statistics" in partial
    assert "<html" not in partial
    services.snapshot_run(snapshot)
    finished = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in finished and "Complete" in finished


def test_a_failed_computation_shows_its_error_and_that_the_old_snapshot_stays(
    client, data_manager, cohort, site, monkeypatch, eager
):
    monkeypatch.setattr(services.transplant, "landmark", lambda *a, **k: [][1])
    client.force_login(data_manager)
    response = client.post(reverse("analytics:recompute"), {"scope": site.code}, follow=True)
    html = response.content.decode()
    assert "latest complete snapshot stays in use" in html
    assert "because of an error in the registry" in html
    assert "IndexError" not in html and "list index" not in html  # the detail is in the log


def test_the_recompute_page_lists_recent_computations(
    client, data_manager, snapshots, site, django_assert_num_queries
):
    client.force_login(data_manager)
    client.get(reverse("analytics:recompute"))
    with django_assert_num_queries(5):
        html = client.get(reverse("analytics:recompute")).content.decode()
    assert reverse("analytics:computation", args=[snapshots[site.code].pk]) in html


def test_the_index_lists_each_scope_with_its_latest_snapshot_in_a_fixed_number_of_queries(
    client, administrator, snapshots, site, django_assert_num_queries
):
    client.force_login(administrator)
    client.get(reverse("analytics:index"))
    with django_assert_num_queries(6):
        html = client.get(reverse("analytics:index")).content.decode()
    for snapshot in snapshots.values():
        assert snapshot.fingerprint in html
    assert scope_url("registry") in html and scope_url(site.code) in html


def test_a_recompute_the_broker_refuses_is_told_in_words_without_the_brokers_address(
    client, data_manager, administrator, cohort, site, monkeypatch
):
    def refuse(**kwargs):
        raise BrokerOperationalError("Error 111 connecting to 10.1.2.3:6379. Connection refused.")

    monkeypatch.setattr(tasks.recompute_analytics, "delay", refuse)
    client.force_login(data_manager)
    response = client.post(reverse("analytics:recompute"), {"scope": site.code}, follow=True)
    snapshot = Snapshot.objects.get()
    admin_page = reverse("admin:analytics_snapshot_change", args=[snapshot.pk])
    for html in (response.content.decode(), client.get(admin_page).content.decode()):
        assert "the task queue is not answering" in html
        assert "10.1.2.3" not in html and "6379" not in html
    client.force_login(administrator)  # who runs the servers reads the detail
    assert "10.1.2.3:6379" in client.get(admin_page).content.decode()


def test_the_competing_risks_adjusted_and_rmst_tables_are_the_snapshots(
    client, users, snapshots, site
):
    output = snapshots[site.code].output
    html = page(client, users[Role.PI], scope_url(site.code)).content.decode()
    for key in ("competing-risks", "adjusted", "balance", "rmst"):
        assert f'data-testid="table-{key}"' in html
    relapse = output["competing_risks"]["relapse"]["car_t"]
    assert f"{100 * relapse['at_12m']:.1f}%" in html
    rmst = output["rmst"]["os"]["12"]
    assert f"{rmst['car_t']['rmst']:.2f} ({rmst['car_t']['se']:.2f})" in html
    for name in ("competing-risks", "balance"):
        url = reverse("analytics:figure", args=[snapshots[site.code].pk, "en", name])
        assert url in html
        assert page(client, users[Role.PI], url)["Content-Type"].startswith("image/svg+xml")


def test_the_new_tables_read_in_chinese(client, users, snapshots, site):
    client.force_login(users[Role.PI])
    html = client.get(scope_url(site.code), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "复发与非复发死亡（竞争风险）" in html and "限制性平均生存时间" in html


def test_a_snapshot_computed_before_the_competing_risks_shows_no_such_table_or_figure(
    snapshots, site
):
    # Snapshots are immutable: one computed before SAP 12-14 is its output without their keys.
    output = {
        key: value
        for key, value in snapshots[site.code].output.items()
        if key not in ("competing_risks", "adjusted", "rmst")
    }
    keys = [table.key for table in views.study_tables(output)]
    assert "survival-pfs" in keys and not {"competing-risks", "balance", "rmst"} & set(keys)
    assert not figures.drawable("competing-risks", output)
    assert not figures.drawable("balance", output) and figures.drawable("pfs", output)
