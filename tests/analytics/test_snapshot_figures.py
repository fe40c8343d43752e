"""Figures belong to their snapshot: drawn once in every language when it is computed, kept
with it, served from there under a URL naming the snapshot and the language (so a browser
never shows a figure of another language or snapshot from its cache)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from analytics import figures, tasks
from analytics.models import ImmutableFigure, Snapshot, SnapshotFigure
from config.celery import app as celery_app
from registry import demo
from registry.domain.vocabulary import Role

pytestmark = pytest.mark.django_db

LANGUAGES = {code for code, _ in settings.LANGUAGES}


@pytest.fixture
def snapshot(users, site, monkeypatch) -> Snapshot:
    """AHP computed by the task that "recompute now" and the nightly run use."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    demo.seed_scaled(20)
    pk = tasks.recompute_analytics.apply(kwargs={"site_code": site.code}).get()
    return Snapshot.objects.get(pk=pk)


@pytest.fixture
def pi(client, users):
    client.force_login(users[Role.PI])
    return users[Role.PI]


def figure_url(snapshot: Snapshot, language: str, name: str = "pfs") -> str:
    return reverse("analytics:figure", args=[snapshot.pk, language, name])


def switch_language(user, language: str) -> None:
    user.language = language
    user.save(update_fields=["language"])


def test_the_computation_keeps_every_shown_figure_in_every_language(snapshot):
    kept = set(SnapshotFigure.objects.filter(snapshot=snapshot).values_list("name", "language"))
    assert kept == {(name, language) for name in figures.SHOWN for language in LANGUAGES}


def test_a_kept_figure_is_served_without_drawing_it_again(client, pi, snapshot, monkeypatch):
    for name in figures.FIGURES:
        monkeypatch.setitem(figures.FIGURES, name, lambda output: pytest.fail("drawn again"))
    for name in figures.SHOWN:
        response = client.get(figure_url(snapshot, "en", name))
        assert response.status_code == 200 and response["Content-Type"].startswith("image/svg")


def test_after_a_language_switch_the_page_links_the_figures_in_the_new_language(
    client, pi, snapshot, site
):
    scope = reverse("analytics:scope", args=[site.code])
    english = client.get(scope).content.decode()
    switch_language(pi, "zh-hans")
    chinese = client.get(scope).content.decode()
    assert figure_url(snapshot, "en") in english and figure_url(snapshot, "zh-hans") not in english
    assert figure_url(snapshot, "zh-hans") in chinese and figure_url(snapshot, "en") not in chinese
    assert "风险人数" in client.get(figure_url(snapshot, "zh-hans")).content.decode()
    # The English URL keeps its English figure, whatever the reader's language now.
    english_figure = client.get(figure_url(snapshot, "en")).content.decode()
    assert "Number at risk" in english_figure and "风险人数" not in english_figure


def test_a_newer_snapshot_has_other_figure_urls(client, pi, snapshot, site):
    newer = Snapshot.objects.get(
        pk=tasks.recompute_analytics.apply(kwargs={"site_code": site.code}).get()
    )
    assert figure_url(newer, "en") != figure_url(snapshot, "en")
    page = client.get(reverse("analytics:scope", args=[site.code])).content.decode()
    assert figure_url(newer, "en") in page and figure_url(snapshot, "en") not in page


def test_a_figure_url_may_be_kept_for_ever_and_is_checked_by_its_etag(client, pi, snapshot):
    response = client.get(figure_url(snapshot, "zh-hans", "os"))
    assert "immutable" in response["Cache-Control"] and response["Content-Language"] == "zh-hans"
    again = client.get(figure_url(snapshot, "zh-hans", "os"), HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert response["ETag"] != client.get(figure_url(snapshot, "en", "os"))["ETag"]


def test_the_url_without_a_language_is_not_kept_by_browsers(client, pi, snapshot):
    response = client.get(reverse("analytics:figure", args=[snapshot.pk, "pfs"]))
    assert response.status_code == 200 and "no-cache" in response["Cache-Control"]


def test_an_unknown_language_or_figure_is_not_found(client, pi, snapshot):
    assert client.get(figure_url(snapshot, "fr")).status_code == 404
    assert client.get(figure_url(snapshot, "en", "nope")).status_code == 404


def test_a_figure_not_drawn_yet_is_drawn_once_and_kept(client, pi, snapshot):
    name = "sm-any_hsct-car_t"  # not among the shown ones
    assert not SnapshotFigure.objects.filter(snapshot=snapshot, name=name).exists()
    first = client.get(figure_url(snapshot, "en", name)).content
    assert SnapshotFigure.objects.filter(snapshot=snapshot, name=name, language="en").count() == 1
    assert client.get(figure_url(snapshot, "en", name)).content == first


def test_a_kept_figure_is_never_changed_or_deleted(snapshot):
    figure = SnapshotFigure.objects.filter(snapshot=snapshot).first()
    figure.svg = "<svg/>"
    with pytest.raises(ImmutableFigure):
        figure.save()
    with pytest.raises(ImmutableFigure):
        figure.delete()
    with pytest.raises(ImmutableFigure):
        SnapshotFigure.objects.filter(snapshot=snapshot).update(svg="")


def test_a_figure_of_another_sites_snapshot_is_not_found_for_a_pi(client, pi, users, other_site):
    from analytics import services
    from analytics.models import Trigger

    other = services.snapshot_compute(site=other_site, trigger=Trigger.COMMAND)
    assert client.get(figure_url(other, "en")).status_code == 404


def test_a_kept_figure_is_served_in_a_fixed_number_of_queries(
    client, pi, snapshot, django_assert_num_queries
):
    client.get(figure_url(snapshot, "en", "os"))
    with django_assert_num_queries(6):
        response = client.get(figure_url(snapshot, "zh-hans", "pfs"))
    assert response.status_code == 200
