"""Where each role lands, and that no page shows a user a link they may not follow.

The crawl follows every <a href> of every page a user reaches from their home (through the
test client; tests/browser walks the same in a browser) and asks each link's page: none may
answer 403 or 404. The admin's own pages are asked for but not crawled further (the admin is
Django's, and checks the same matrix through registry.admin).
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.template import Context, Template
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone

from analytics import services as analytics
from registry import services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import CrsEpisode, DataQualityQuery
from tests import factories

pytestmark = pytest.mark.django_db

MAX_PAGES = 400


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.hrefs


def crawl(client, start: str = "/") -> tuple[dict[str, int], list[str]]:
    """Every page reachable by links from `start`: {url: status}, and each broken link as
    "url (status) linked from page"."""
    seen: dict[str, int] = {}
    broken: list[str] = []
    queue: deque[tuple[str, str]] = deque([(start, "sign-in")])
    while queue and len(seen) < MAX_PAGES:
        url, source = queue.popleft()
        if url in seen:
            continue
        response = client.get(url, follow=True)
        seen[url] = response.status_code
        if response.status_code >= 400:
            broken.append(f"{url} ({response.status_code}) linked from {source}")
            continue
        final = response.redirect_chain[-1][0] if response.redirect_chain else url
        if urlsplit(final).path.startswith("/admin/") or not response.get(
            "Content-Type", ""
        ).startswith("text/html"):
            continue
        for href in links_of(response.content.decode()):
            target, _fragment = urldefrag(urljoin(final, href))
            parts = urlsplit(target)
            if parts.scheme not in ("", "http") or parts.netloc not in ("", "testserver"):
                continue  # another site
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if path and path not in seen:
                queue.append((path, url))
    return seen, broken


@pytest.fixture
def registry_in_use(users, site, other_site):
    """Patients at both sites with records of every kind, open data-quality queries, follow-up
    visits due, and computed analytics for every scope."""
    nurse = users[Role.NURSE]
    for study_id, days_ago in (("NAV-1", 100), ("NAV-2", 400)):
        patient = factories.patient(
            user=nurse,
            site=site,
            study_id=study_id,
            diagnosis_date=today() - timedelta(days=days_ago + 30),
        )
        treatment = factories.treatment(
            user=nurse, patient=patient, day0=today() - timedelta(days=days_ago)
        )
        services.record_create(
            CrsEpisode,
            user=nurse,
            treatment=treatment,
            onset=treatment.day0 + timedelta(days=2),
            max_temperature_c=38.5,
            hypotension=False,
            oxygen="none",
        )
    administrator = users[Role.ADMINISTRATOR]
    elsewhere = factories.patient(user=administrator, site=other_site, study_id="NAV-X")
    factories.treatment(user=administrator, patient=elsewhere)
    for scope in (None, site, other_site):
        analytics.snapshot_compute(site=scope, trigger="command")


@pytest.mark.parametrize("role", list(Role))
def test_no_page_links_a_user_to_a_page_they_may_not_open(client, users, registry_in_use, role):
    client.force_login(users[role])
    seen, broken = crawl(client)
    assert broken == []
    assert len(seen) > 5  # the crawl got somewhere


@pytest.mark.parametrize(
    "role, home",
    [
        (Role.NURSE, "/worklist/"),
        (Role.PI, "/analytics/"),
        (Role.DATA_MANAGER, "/"),
        (Role.ADMINISTRATOR, "/"),
    ],
)
def test_each_role_lands_on_its_own_home(client, users, role, home):
    client.force_login(users[role])
    response = client.get(reverse("home"), follow=True)
    assert response.status_code == 200
    assert (response.redirect_chain[-1][0] if response.redirect_chain else "/") == home


def test_signing_in_leads_a_pi_to_the_analytics_not_the_worklist(client, users):
    pi = users[Role.PI]
    pi.set_password("a-long-enough-password")
    pi.save()
    response = client.post(
        reverse("login"),
        {"username": pi.username, "password": "a-long-enough-password"},
        follow=True,
    )
    assert [url for url, _status in response.redirect_chain] == ["/", "/analytics/"]


def test_a_data_managers_home_is_their_queries_and_data_exchange(client, data_manager, treatment):
    client.force_login(data_manager)
    page = client.get(reverse("home")).content.decode()
    for url in (
        reverse("admin:registry_dataqualityquery_changelist"),
        reverse("admin:registry_importrun_upload"),
        reverse("export"),
    ):
        assert f'href="{url}"' in page


@pytest.mark.parametrize(
    "role, may_export",
    [(Role.NURSE, False), (Role.PI, True), (Role.DATA_MANAGER, True), (Role.ADMINISTRATOR, True)],
)
def test_the_export_page_is_in_the_header_of_those_who_may_export(client, users, role, may_export):
    client.force_login(users[role])
    page = client.get(reverse("patients")).content.decode()
    assert (f'href="{reverse("export")}"' in page) is may_export


def test_the_patient_list_counts_one_patient_in_the_singular(client, nurse, patient):
    client.force_login(nurse)
    page = client.get(reverse("patients")).content.decode()
    assert "(1 patient)" in page


@pytest.mark.parametrize(
    "role, action, allowed",
    [
        (Role.NURSE, "edit", True),
        (Role.PI, "edit", False),
        (Role.PI, "export_deidentified", True),
        (Role.NURSE, "analytics", False),
        (Role.DATA_MANAGER, "import", True),
    ],
)
def test_templates_ask_the_permission_matrix_with_the_can_filter(users, role, action, allowed):
    template = Template("{% load access %}{% if user|can:action %}yes{% else %}no{% endif %}")
    rendered = template.render(Context({"user": users[role], "action": action}))
    assert rendered == ("yes" if allowed else "no")


def test_the_can_filter_asks_about_one_site_with_at(users, site, other_site):
    template = Template('{% load access %}{{ user|at:site_id|can:"edit" }}')
    nurse = users[Role.NURSE]
    assert template.render(Context({"user": nurse, "site_id": site.pk})) == "True"
    assert template.render(Context({"user": nurse, "site_id": other_site.pk})) == "False"


def test_browsers_asking_for_favicon_ico_get_the_svg_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == static("favicon.svg")
    icon = finders.find("favicon.svg")
    assert icon and "<svg" in Path(icon).read_text()


def test_the_open_queries_are_counted_in_good_english_for_each_scope(
    client, data_manager, administrator, treatment
):
    open_count = DataQualityQuery.objects.filter(is_open=True).count()
    assert open_count > 1
    for user, scope in ((data_manager, "at your sites"), (administrator, "in the registry")):
        client.force_login(user)
        page = client.get(reverse("home")).content.decode()
        assert f"{open_count} open queries {scope}." in page
    DataQualityQuery.objects.exclude(
        pk=DataQualityQuery.objects.filter(is_open=True).first().pk
    ).update(is_open=False, closed_at=timezone.now())
    assert "1 open query in the registry." in client.get(reverse("home")).content.decode()
