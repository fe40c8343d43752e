"""Nothing of another site leaks through the admin: every page of every registered model, tried
as each role of another site, and every filter and query string tried with garbage.

The models are found in `admin.site._registry`, so a new admin cannot be forgotten: each model
is either site data (a row of it is made at the owning site here, in OWNED_BY_SITE_A) or listed
in NOT_SITE_DATA with the reason why nobody but an administrator reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from analytics.models import Snapshot
from registry import demo, quality, services
from registry.admin_scope import SiteScopedAdmin
from registry.domain.vocabulary import Role
from registry.models import (
    CarPersistence,
    DataQualityQuery,
    Death,
    ExportLog,
    IecHsEpisode,
    ImportRun,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    QueryKind,
    SecondCancer,
    Site,
    Treatment,
    User,
)
from registry.selectors import SITE_PATH

# Models whose admin is for administrators only: nothing in them is one site's data that a
# data manager may read (INTERFACES.md 5: users, sites, schedules, sign-in security records).
NOT_SITE_DATA = {
    "auth.group": "permission groups, administrators only",
    "registry.apitoken": "API tokens (a digest of each key), administrators only",
    "django_celery_beat.periodictask": "schedules, administrators only",
    "django_celery_beat.clockedschedule": "schedules, administrators only",
    "django_celery_beat.crontabschedule": "schedules, administrators only",
    "django_celery_beat.solarschedule": "schedules, administrators only",
    "django_celery_beat.intervalschedule": "schedules, administrators only",
    "axes.accessattempt": "sign-in security records, administrators only",
    "axes.accesslog": "sign-in security records, administrators only",
    "axes.accessfailurelog": "sign-in security records, administrators only",
    "otp_totp.totpdevice": "second-factor devices, administrators only",
    "registry.site": "the sites themselves, administrators only",
    "registry.user": "the users, administrators only",
}

SECRET_FILE = "ahp-secret-cohort.csv"
pytestmark = pytest.mark.django_db


@dataclass
class World:
    site_a: Site
    site_b: Site
    owned: dict[str, object]  # model label -> a row belonging to site A
    secrets: dict[str, set[str]]  # model label -> strings of that row no one at B may see
    strangers: dict[Role, User]  # the users of site B
    administrator: User
    data_manager_a: User


def _label(model) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """One setup for the module, rolled back at its end: site A (AHP) with records of every
    kind, and a nurse, data manager and PI at site B (XHC)."""
    with django_db_blocker.unblock(), transaction.atomic():
        demo.seed_scaled(40)
        site_a, site_b = Site.objects.get(code="AHP"), Site.objects.get(code="XHC")
        administrator = User.objects.get(username="admin")
        data_manager_a = User.objects.get(username="datamanager")
        owned: dict[str, object] = {}
        late_events = (Infection, IecHsEpisode, IvigCourse, CarPersistence, SecondCancer)
        for model in SITE_PATH:
            if model in (DataQualityQuery, LabValue, *late_events):
                continue  # made below (the demo has no lab values nor late events)
            row = model.objects.filter(**{SITE_PATH[model]: site_a}).order_by("pk").first()
            assert row is not None, f"the seeded data has no {model.__name__}: seed more"
            owned[_label(model)] = row
        patient = owned["registry.patient"]
        treatment = owned["registry.treatment"]
        owned["registry.labvalue"] = services.record_create(
            LabValue, user=administrator, treatment=treatment, date=treatment.day0, anc_per_ul=800
        )
        late_values = {
            Infection: {"onset": treatment.day0, "site": "cns", "organism_class": "fungal",
                        "ctcae_grade": 3},
            IecHsEpisode: {"onset": treatment.day0, "recorded_grade": 2},
            IvigCourse: {"start": treatment.day0},
            CarPersistence: {"date": treatment.day0, "method": "qpcr"},
            SecondCancer: {"date": treatment.day0, "cancer_type": "T-cell lymphoma"},
        }  # fmt: skip
        for model in late_events:
            owned[_label(model)] = services.record_create(
                model, user=administrator, treatment=treatment, **late_values[model]
            )
        query = DataQualityQuery.objects.create(
            patient=patient,
            kind=QueryKind.FOLLOW_UP_OVERDUE,
            key="scope-test",
            message="the day 28 visit is overdue",
            opened_at=timezone.now() - timedelta(days=3),
        )
        quality.query_close(query, user=data_manager_a, reason="confirmed with the ward")
        owned["registry.dataqualityquery"] = query
        owned["analytics.snapshot"] = Snapshot.objects.create(
            site=site_a,
            status="failed",
            trigger="command",
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            error="AHP-SECRET-SNAPSHOT",
        )
        owned["registry.importrun"] = ImportRun.objects.create(
            user=data_manager_a, file_name=SECRET_FILE, outcome="failed"
        )
        owned["registry.exportlog"] = ExportLog.objects.create(
            user=data_manager_a, format="csv", identified=True, scope="AHP", file_name=SECRET_FILE
        )
        secrets = {}
        for label, row in owned.items():
            if isinstance(row, Patient | Treatment | Death | DataQualityQuery):
                secrets[label] = {(row if isinstance(row, Patient) else row.patient).study_id}
            elif label in {_label(model) for model in SITE_PATH} or isinstance(row, LabValue):
                secrets[label] = {row.treatment.patient.study_id}
            else:
                secrets[label] = {SECRET_FILE, "AHP-SECRET-SNAPSHOT"}
        strangers = {
            role: User.objects.create(username=f"xhc_{role.value}", role=role)
            for role in (Role.NURSE, Role.DATA_MANAGER, Role.PI)
        }
        for user in strangers.values():
            user.sites.set([site_b])
        yield World(site_a, site_b, owned, secrets, strangers, administrator, data_manager_a)
        transaction.set_rollback(True)


def object_urls(model_admin, row) -> Iterator[tuple[str, str]]:
    """(page, URL) of every admin page about one row."""
    info = (row._meta.app_label, row._meta.model_name)
    for page in ("change", "history", "delete"):
        yield page, reverse("admin:{}_{}_{}".format(*info, page), args=[row.pk])
    if isinstance(model_admin, SimpleHistoryAdmin):
        version = row.history.earliest("history_date").history_id
        url = reverse("admin:{}_{}_simple_history".format(*info), args=[row.pk, version])
        yield "history version", url


def test_every_registered_model_is_site_data_or_listed_as_not_site_data(world):
    unclassified = [
        label
        for label in map(_label, admin.site._registry)
        if label not in world.owned and label not in NOT_SITE_DATA
    ]
    assert not unclassified, (
        f"classify these admin models: make a row of each at site A in `world`, or list it "
        f"in NOT_SITE_DATA with a reason: {unclassified}"
    )


def test_every_registered_admin_is_site_scoped(world):
    """Ours by their bases, the other apps' by registry.admin_scope.scope_every_admin."""
    unscoped = [
        _label(model)
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, SiteScopedAdmin)
    ]
    assert not unscoped


def test_a_site_filter_offers_only_the_sites_of_the_rows_the_user_may_see(client, world):
    client.force_login(world.strangers[Role.DATA_MANAGER])
    page = client.get(reverse("admin:registry_patient_changelist")).content.decode()
    assert f"site__id__exact={world.site_a.pk}" not in page


def _changes(row) -> Callable[[], tuple]:
    """A fingerprint of a row and its history, to see that a request changed nothing."""
    model = type(row)

    def fingerprint() -> tuple:
        current = model.objects.filter(pk=row.pk).values().first()
        history = getattr(model, "history", None)
        versions = history.filter(pk=row.pk).count() if history is not None else 0
        return current, versions

    return fingerprint


def test_another_sites_users_find_nothing_of_a_site_on_any_admin_page(client, world):
    """As a nurse, data manager and PI of site B: the list does not show site A's row, and
    its change, history, history version and delete pages (GET and POST) are a 404 or 403
    (a sign-in page for those with no admin), with nothing of the row in the body."""
    leaks = []
    for model, model_admin in admin.site._registry.items():
        label = _label(model)
        if label not in world.owned:
            continue
        row = world.owned[label]
        before = _changes(row)()
        for role, user in world.strangers.items():
            client.force_login(user)
            changelist = reverse(f"admin:{row._meta.app_label}_{row._meta.model_name}_changelist")
            everything = {"status": "all"} if model is DataQualityQuery else {}
            response = client.get(changelist, everything)
            if response.status_code == 200:
                if response.context["cl"].queryset.filter(pk=row.pk).exists():
                    leaks.append(f"{role} {label}: listed on {changelist}")
            elif not _refused(response, role):
                leaks.append(f"{role} {label}: {changelist} answered {response.status_code}")
            # Nurses and PIs have no admin (its sign-in page whatever the URL): read only.
            methods = ("get", "post") if role == Role.DATA_MANAGER else ("get",)
            for page, url in object_urls(model_admin, row):
                for method in methods:
                    # a reason given, so that the refusal is not for want of one
                    data = {"post": "yes", "delete_reason": "x", "close_reason": "x"}
                    response = getattr(client, method)(url, data if method == "post" else None)
                    if page == "delete" and method == "post":  # no reason: not found all the same
                        refused = client.post(url, {"post": "yes"})
                        if refused.status_code != response.status_code:
                            leaks.append(
                                f"{role} POST {url} without a reason: {refused.status_code}"
                            )
                    if not _refused(response, role):
                        leaks.append(
                            f"{role} {method.upper()} {url} ({page}): {response.status_code}"
                        )
                    body = response.content.decode(errors="replace")
                    for secret in world.secrets[label]:
                        if secret in body:
                            leaks.append(f"{role} {method.upper()} {url} ({page}): shows {secret}")
        if _changes(row)() != before:
            leaks.append(f"{label}: a request of another site's user changed the row")
    assert not leaks, "\n".join(leaks)


def _refused(response, role: Role) -> bool:
    if role == Role.DATA_MANAGER:
        return response.status_code in (403, 404)
    # nurses and PIs have no admin: its sign-in page
    return response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_a_past_version_is_read_only_for_every_model_even_for_an_administrator(client, world):
    """The history is the audit: a POST to a past version changes nothing, with a reason."""
    client.force_login(world.administrator)
    written = []
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, SimpleHistoryAdmin):
            continue
        row = world.owned.get(_label(model)) or model.objects.order_by("pk").first()
        before = _changes(row)()
        url = next(url for page, url in object_urls(model_admin, row) if page == "history version")
        assert client.get(url).status_code == 200, url
        response = client.post(url, {"close_reason": "reopened by a revert", "change_reason": "x"})
        if response.status_code != 403 or "read-only" not in response.content.decode():
            written.append(f"{url}: {response.status_code}")
        if _changes(row)() != before:
            written.append(f"{url}: the row or its history changed")
    assert not written, "\n".join(written)


def test_a_closed_query_cannot_be_closed_again_through_its_history(client, world):
    query = world.owned["registry.dataqualityquery"]
    client.force_login(world.data_manager_a)
    version = query.history.earliest("history_date").history_id
    url = reverse("admin:registry_dataqualityquery_simple_history", args=[query.pk, version])
    response = client.post(url, {"close_reason": "overwritten"})
    assert response.status_code == 403
    query.refresh_from_db()
    assert (query.closed_by, query.close_reason) == (
        world.data_manager_a,
        "confirmed with the ward",
    )


def test_the_query_service_refuses_to_close_a_closed_query(world):
    query = world.owned["registry.dataqualityquery"]
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        quality.query_close(query, user=world.administrator, reason="again")
    query.refresh_from_db()
    assert query.close_reason == "confirmed with the ward"


# --- garbage in the query string: a 400 with a message, or the filter ignored; never a 500 ---

# A value no filter can use: not a number, not a choice, not a key; and a number too large for
# any integer column.
GARBAGE = ["x", "99999999999999999999999"]
COMMON_PARAMETERS = ["p", "o", "q", "_to_field"]  # page, ordering, search, the popup's key


def changelist_parameters(model_admin, request) -> set[str]:
    """Every query-string name the changelist reads: each filter's, search, ordering, paging
    and the date hierarchy's."""
    names = set(COMMON_PARAMETERS)
    changelist = model_admin.get_changelist_instance(request)
    for spec in changelist.filter_specs:
        names.update(spec.expected_parameters())
    if model_admin.date_hierarchy:
        field = model_admin.date_hierarchy
        names.update({f"{field}__year", f"{field}__month", f"{field}__day"})
    return names


def _changelist_answer(model_admin, request) -> tuple[int, str]:
    """The list's status and page, its view called as the admin site calls it (the test
    client's sign-in, session and middleware are tried elsewhere: they cost more than the
    list, hundreds of times here)."""
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    try:
        response = model_admin.changelist_view(request)
        if hasattr(response, "render"):
            response.render()
    except Exception as error:  # what the handler would answer 500 (or 400 for a few)
        return 500, repr(error)
    return response.status_code, response.content.decode(errors="replace")


def test_no_garbage_in_an_admin_lists_query_string_is_a_server_error(world, rf):
    """Every filter, search, ordering, page and date of every registered admin list, tried
    as site B's data manager where they may read the list (its queries run, with no row to
    draw), else as an administrator."""
    errors = []
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        user = world.strangers[Role.DATA_MANAGER]
        probe = rf.get(url)
        probe.user = user
        if not model_admin.has_view_permission(probe):
            probe.user = user = world.administrator
        for name in sorted(changelist_parameters(model_admin, probe)):
            for value in GARBAGE:
                request = rf.get(url, {name: value})
                request.user = user
                status, page = _changelist_answer(model_admin, request)
                if status != 200 and (
                    status != 400 or not ("not valid" in page or "not allowed" in page)
                ):
                    errors.append(f"{url}?{name}={value!r}: {status} {page[:200]}")
                if status == 200 and name not in ("p", "o"):
                    break  # taken as text: a number is just more text
    assert not errors, "\n".join(errors)


def test_the_worst_crs_grade_filter_refuses_a_grade_that_is_not_one(client, world):
    client.force_login(world.data_manager_a)
    url = reverse("admin:registry_patient_changelist")
    response = client.get(url, {"crs_grade": "two"})
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert client.get(url, {"crs_grade": "2"}).status_code == 200


# The query-string names each page reads; a page of the URLconf without path arguments that is
# not listed here fails the test until it is.
PAGE_PARAMETERS = {
    "home": [],
    "worklist": ["lost_page", "queries_page"],
    "patients": ["study_id", "arm", "site", "vital_status", "page"],
    "patient-new": [],
    "export": ["format", "deidentify", "labs"],
    "export-codebook": ["deidentify"],
    "analytics:index": ["site"],
    "analytics:reports": ["rendering"],
    "analytics:recompute": ["scope"],
}
NOT_A_PAGE = {"login", "logout", "healthz", "set-language", "crs-grade", "icans-grade"}


def test_no_garbage_in_a_pages_query_string_is_a_server_error(world):
    from django.urls import URLPattern, get_resolver

    from analytics.urls import urlpatterns as analytics_patterns
    from registry.urls import urlpatterns as registry_patterns

    names = {p.name for p in registry_patterns if isinstance(p, URLPattern)} | {
        f"analytics:{p.name}" for p in analytics_patterns if not p.pattern.regex.groupindex
    }
    plain = {
        name
        for name in names
        if (name and not name.startswith("analytics:")) or name in PAGE_PARAMETERS
    }
    with_arguments = {p.name for p in registry_patterns if p.pattern.regex.groupindex}
    unlisted = plain - set(PAGE_PARAMETERS) - NOT_A_PAGE - with_arguments
    assert not unlisted, f"say which query-string names these pages read: {sorted(unlisted)}"
    assert get_resolver()  # the URLconf is loaded
    client = Client(raise_request_exception=False)
    errors = []
    for user in (world.data_manager_a, world.strangers[Role.NURSE]):
        client.force_login(user)
        for name, parameters in PAGE_PARAMETERS.items():
            url = reverse(name)
            for parameter in [*parameters, "unknown"]:
                for value in GARBAGE:
                    response = client.get(url, {parameter: value})
                    if response.status_code >= 500 or (
                        response.status_code == 400
                        and "not allowed" not in response.content.decode()
                    ):
                        errors.append(f"{user} {url}?{parameter}={value!r}: {response.status_code}")
        for url in (
            "/analytics/scopes/x/",
            "/analytics/scopes/99999999999999999999999/",
            "/records/x/99999999999/",
            "/patients/99999999999999/",
        ):
            response = client.get(url)
            if response.status_code >= 500:
                errors.append(f"{user} {url}: {response.status_code}")
    assert not errors, "\n".join(errors)


def test_a_nul_in_any_query_string_is_a_400_that_says_why(client, world):
    client.force_login(world.data_manager_a)
    for url in ("/patients/", reverse("admin:registry_patient_changelist"), "/api/patients/"):
        response = client.get(url, {"q": "a\x00b"})
        assert response.status_code == 400, url
        assert "not allowed" in response.content.decode(), url
