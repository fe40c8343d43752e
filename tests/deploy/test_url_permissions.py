"""Every URL of the URLconf, for anonymous users and for each role at its own site and at another,
answers as INTERFACES.md sections 4 and 5 say.

The URLs are found by walking config.urls, so a new view cannot be forgotten: every URL name
needs an entry in EXPECTED (the admin's are covered by rule, on a sample of every registered
model), and every URL argument needs a way to be filled in URL_ARGUMENTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from analytics import services as analytics
from analytics.models import Report, Snapshot
from analytics.views import FIGURES
from registry import demo, services
from registry.models import (
    CarPersistence,
    IecHsEpisode,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    SecondCancer,
    Site,
    Treatment,
    User,
)
from registry.selectors import SITE_PATH
from registry.views import KINDS

ROLES = ("nurse", "datamanager", "pi", "admin")  # the demo users, at AHP
OWN, OTHER = "own", "other"
LOGIN = "to the sign-in page"
ADMIN_LOGIN = "to the admin's sign-in page"
API_ANONYMOUS = "401 or 403"


def everyone(status) -> dict:
    return {"anonymous": status} | {role: (status, status) for role in ROLES}


def signed_in(status, *, anonymous=LOGIN) -> dict:
    return {"anonymous": anonymous} | {role: (status, status) for role in ROLES}


def by_role(*, anonymous=LOGIN, **answers) -> dict:
    """Each role's answer at its own site and at another (one value: the same at both)."""
    return {"anonymous": anonymous} | {
        role: answer if isinstance(answer, tuple) else (answer, answer)
        for role, answer in answers.items()
    }


# Reading a record: anyone at its site; another site's record is a 404 except for administrators.
READ_RECORD = by_role(nurse=(200, 404), datamanager=(200, 404), pi=(200, 404), admin=200)
# Adding or editing clinical data: nurses and data managers at their sites, administrators.
EDIT_RECORD = by_role(nurse=(200, 404), datamanager=(200, 404), pi=(403, 404), admin=200)
# The analytics of one site: data managers, PIs, administrators.
SITE_ANALYTICS = by_role(nurse=403, datamanager=(200, 404), pi=(200, 404), admin=200)
API_LIST = signed_in(200, anonymous=API_ANONYMOUS)
API_DETAIL = READ_RECORD | {"anonymous": API_ANONYMOUS}

EXPECTED: dict[str, dict] = {
    # the sign-in page and the health check are open to all; signing out is a POST
    "login": everyone(200),
    "healthz": everyone(200),
    "logout": everyone(405),
    "otp-verify": signed_in(302),  # no device yet: on to enrolment
    "otp-setup": signed_in(200),
    # the nurses' pages
    # each role's home: nurses to the worklist, PIs to the analytics (302); data managers and
    # administrators have a page of queries and data exchange
    "home": by_role(nurse=302, datamanager=200, pi=302, admin=200),
    "favicon": everyone(301),  # to the static SVG icon
    "worklist": signed_in(200),
    "patients": signed_in(200),
    "patient-new": by_role(nurse=200, datamanager=200, pi=403, admin=200),
    "patient-detail": READ_RECORD,
    # a treatment's lab grid: read by anyone at its site (the grid's inputs for those who edit)
    "treatment-labs": READ_RECORD,
    "record-new": EDIT_RECORD,
    "record-edit": EDIT_RECORD,
    "set-language": signed_in(405),  # POST only
    "crs-grade": signed_in(405),
    "icans-grade": signed_in(405),
    # exports: data managers (identified or not), PIs (de-identified), administrators
    "export": by_role(nurse=403, datamanager=200, pi=200, admin=200),
    "export-codebook": by_role(nurse=403, datamanager=200, pi=200, admin=200),
    # analytics and reports
    "analytics:index": by_role(nurse=403, datamanager=200, pi=200, admin=200),
    "analytics:recompute": by_role(nurse=403, datamanager=200, pi=403, admin=200),
    "analytics:computation": SITE_ANALYTICS,
    "analytics:figure": SITE_ANALYTICS,
    "analytics:scope": SITE_ANALYTICS,
    "analytics:reports": by_role(nurse=403, datamanager=200, pi=200, admin=200),
    "analytics:report-render": signed_in(405),
    "analytics:report-download": by_role(
        nurse=404, datamanager=(200, 404), pi=(200, 404), admin=200
    ),
    # the REST API and its schema
    "api:api-root": API_LIST,
    "api:schema": API_LIST,
    "api:swagger-ui": API_LIST,
    "api:redoc": API_LIST,
    "api:analytics-latest": by_role(
        anonymous=API_ANONYMOUS, nurse=403, datamanager=403, pi=403, admin=200
    ),
    **{
        f"api:{basename}-{suffix}": expected
        for basename in (
            "patient",
            "treatment",
            "crs-episode",
            "icans-episode",
            "response",
            "transplant",
            "contact",
            "relapse",
            "death",
            "lab",
            "infection",
            "iec-hs-episode",
            "ivig-course",
            "persistence-assessment",
            "second-cancer",
        )
        for suffix, expected in (("list", API_LIST), ("detail", API_DETAIL))
    },
    "api:report-list": by_role(
        anonymous=API_ANONYMOUS, nurse=403, datamanager=200, pi=200, admin=200
    ),
    **{
        name: by_role(
            anonymous=API_ANONYMOUS, nurse=403, datamanager=(200, 404), pi=(200, 404), admin=200
        )
        for name in ("api:report-detail", "api:report-download")
    },
}

# The admin (INTERFACES.md 5: data managers and administrators; users, sites, schedules and
# the sign-in security records: administrators only). Anyone else goes to its sign-in page.
ADMIN_FOR_DATA_MANAGERS = {"registry", "analytics"}
ADMINISTRATORS_ONLY_MODELS = {"registry.site", "registry.user", "registry.apitoken"}


def admin_expected(model_label: str | None) -> dict:
    # another site's record does not exist (registry/admin_scope.py)
    if model_label in (
        "registry.patient:change",
        "registry.patient:history",
        "registry.patient:simple_history",
    ):
        return admin_expected("registry.patient") | {"datamanager": (200, 404)}
    for_data_managers = model_label is None or (
        model_label.split(".")[0] in ADMIN_FOR_DATA_MANAGERS
        and model_label not in ADMINISTRATORS_ONLY_MODELS
    )
    return by_role(
        anonymous=ADMIN_LOGIN,
        nurse=ADMIN_LOGIN,
        pi=ADMIN_LOGIN,
        datamanager=200 if for_data_managers else 403,
        admin=200,
    )


# --- the data every URL is tried on ----------------------------------------------------------------


@dataclass
class World:
    """Records of every kind at AHP (the users' own site) and at XHC (another site)."""

    sites: dict[str, Site]
    records: dict[tuple[type, str], object]  # (model, OWN/OTHER) -> a record
    snapshots: dict[str, Snapshot]  # OWN, OTHER, and "registry"
    reports: dict[str, Report]
    users: dict[str, User]

    def site(self, relation: str) -> Site:
        return self.sites[relation]


# The late events, made on day 0 of a treatment at each site (the demo has none yet).
LATE_EVENTS = {
    Infection: lambda day0: {
        "onset": day0,
        "site": "bloodstream",
        "organism_class": "bacterial",
        "ctcae_grade": 3,
    },
    IecHsEpisode: lambda day0: {"onset": day0, "ferritin_rise": True, "recorded_grade": 2},
    IvigCourse: lambda day0: {"start": day0},
    CarPersistence: lambda day0: {"date": day0, "method": "flow", "detected": True},
    SecondCancer: lambda day0: {"date": day0, "cancer_type": "MDS"},
}


@pytest.fixture
def world(db, settings, tmp_path) -> World:
    settings.MEDIA_ROOT = tmp_path
    demo.seed_scaled(60)
    own, other = Site.objects.get(code="AHP"), Site.objects.get(code="XHC")
    # Some patients move to XHC, so that both sites have records of every kind.
    models = {kind.model for kind in KINDS.values()} - set(LATE_EVENTS)
    moved: set[int] = set()
    for model in sorted(models, key=lambda model: model.objects.count()):
        patients = sorted({record.patient.pk for record in model.objects.all()})
        if len(patients) > 1 and not moved & set(patients):
            moved.add(patients[-1])
    Patient.objects.filter(pk__in=moved).update(site=other)
    sites = {OWN: own, OTHER: other}
    records = {}
    for model in models:
        path = SITE_PATH[model]
        for relation, site in sites.items():
            record = model.objects.filter(**{path: site}).order_by("pk").first()
            if record is None:
                pytest.fail(f"the test data has no {model.__name__} at {site}: seed more")
            records[model, relation] = record
    administrator = User.objects.get(username="admin")
    for relation in sites:  # no lab values nor late events in the demo yet (issue #17)
        treatment = records[Treatment, relation]
        records[LabValue, relation] = services.record_create(
            LabValue, user=administrator, treatment=treatment, date=treatment.day0, anc_per_ul=800
        )
        for model, values in LATE_EVENTS.items():
            records[model, relation] = services.record_create(
                model, user=administrator, treatment=treatment, **values(treatment.day0)
            )
    snapshots = {
        relation: analytics.snapshot_compute(site=site, trigger="command")
        for relation, site in sites.items()
    } | {"registry": analytics.snapshot_compute(site=None, trigger="command")}
    reports = {
        relation: Report.objects.create(
            site=sites[relation],
            month=date(2024, 10, 1),
            language="en",
            snapshot=snapshots[relation],
            pdf=ContentFile(b"%PDF-1.4 test", name=f"{relation}.pdf"),
            size_bytes=13,
            trigger="command",
        )
        for relation in (OWN, OTHER)
    }
    users = {name: User.objects.get(username=name) for name in ROLES}
    return World(sites, records, snapshots, reports, users)


# --- the URLs, from the URLconf ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str  # namespaced: "analytics:reports", "api:patient-detail"
    arguments: tuple[str, ...]


def routes(patterns=None, namespace: str = "") -> Iterator[Route]:
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or ""
            full = f"{namespace}:{inner}" if namespace and inner else inner or namespace
            yield from routes(pattern.url_patterns, full)
        elif isinstance(pattern, URLPattern):
            name = pattern.name and (f"{namespace}:{pattern.name}" if namespace else pattern.name)
            arguments = tuple(sorted(pattern.pattern.regex.groupindex))
            yield Route(name or f"<unnamed {pattern.pattern}>", arguments)


def api_record_routes() -> dict[str, type]:
    """The detail route names of the API's clinical records ("api:patient-detail"), and their
    models."""
    from registry.api.urls import router
    from registry.api.views import ClinicalViewSet

    return {
        f"api:{basename}-detail": viewset.model
        for _, viewset, basename in router.registry
        if issubclass(viewset, ClinicalViewSet)
    }


API_RECORD_ROUTES = api_record_routes()


def urls_of(route: Route, world: World) -> Iterator[tuple[str, str]]:
    """(relation, URL) for every way this route is tried."""
    name, arguments = route.name, set(route.arguments)
    if "format" in arguments:
        return  # the API's format suffixes: the same views as without them
    relations = (OWN, OTHER)
    if not arguments:
        yield OWN, reverse(name)
    elif name == "patient-detail":
        for relation in relations:
            yield relation, reverse(name, args=[world.records[Patient, relation].pk])
    elif name == "treatment-labs":
        for relation in relations:
            yield relation, reverse(name, args=[world.records[Treatment, relation].pk])
    elif name == "record-edit":
        for kind_name, kind in KINDS.items():
            for relation in relations:
                record = world.records[kind.model, relation]
                yield relation, reverse(name, args=[kind_name, record.pk])
    elif name == "record-new":
        for kind_name, kind in KINDS.items():
            if kind.parent is None:
                continue  # patients: patient-new
            for relation in relations:
                parent = world.records[kind.parent, relation]
                yield relation, reverse(name, args=[parent.pk, kind_name])
    elif name in ("analytics:computation", "analytics:figure"):
        for relation in relations:
            snapshot = world.snapshots[relation]
            figure = {"name": next(iter(FIGURES))} if name == "analytics:figure" else {}
            yield relation, reverse(name, kwargs={"pk": snapshot.pk} | figure)
    elif name == "analytics:scope":
        for relation in relations:
            yield relation, reverse(name, args=[world.site(relation).code])
    elif name in ("analytics:report-download", "api:report-detail", "api:report-download"):
        for relation in relations:
            yield relation, reverse(name, args=[world.reports[relation].pk])
    elif name == "api:lab-detail":
        for relation in relations:
            yield relation, reverse(name, args=[world.records[LabValue, relation].pk])
    elif name in API_RECORD_ROUTES:
        for relation in relations:
            record = world.records[API_RECORD_ROUTES[name], relation]
            yield relation, reverse(name, args=[record.pk])
    else:
        pytest.fail(f"no way to fill the arguments {sorted(arguments)} of {name}: add it here")


def admin_urls(world: World) -> Iterator[tuple[str, str, str | None]]:
    """A sample of the admin: its index, and every registered model's list and add pages (and
    a clinical record's change and history pages at both sites)."""
    yield OWN, reverse("admin:index"), None
    for model in admin.site._registry:
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        info = (model._meta.app_label, model._meta.model_name)
        yield OWN, reverse("admin:{}_{}_changelist".format(*info)), label
    for relation in (OWN, OTHER):
        patient = world.records[Patient, relation]
        version = patient.history.earliest("history_date").history_id
        for page, arguments in (
            ("change", [patient.pk]),
            ("history", [patient.pk]),
            ("simple_history", [patient.pk, version]),
        ):
            url = reverse(f"admin:registry_patient_{page}", args=arguments)
            yield relation, url, f"registry.patient:{page}"


# --- the test --------------------------------------------------------------------------------------


# Every answer to a signed-in user says Cache-Control: no-store (patient data), but the analytics
# figures: aggregates, under a URL naming their snapshot, kept by the browser (private).
KEPT_BY_THE_BROWSER = {"analytics:figure"}


def answer_matches(response, expected) -> bool:
    location = response.get("Location", "")
    if expected == LOGIN:
        return response.status_code == 302 and location.startswith(reverse("login"))
    if expected == ADMIN_LOGIN:
        return response.status_code == 302 and location.startswith(reverse("admin:login"))
    if expected == API_ANONYMOUS:
        return response.status_code in (401, 403)
    return response.status_code == expected


def test_every_url_answers_every_role_as_interfaces_md_says(client, world):
    found = list(routes())
    unnamed = [route.name for route in found if route.name.startswith("<unnamed")]
    missing = sorted(
        {route.name for route in found}
        - set(EXPECTED)
        - {route.name for route in found if route.name.startswith("admin:")}
        - set(unnamed)
    )
    assert not missing, f"URL names with no expected answers in EXPECTED: {missing}"

    cases = [
        (url, relation, EXPECTED[route.name], route.name)
        for route in found
        if route.name in EXPECTED
        for relation, url in urls_of(route, world)
    ] + [
        (url, relation, admin_expected(label), f"admin ({label or 'index'})")
        for relation, url, label in admin_urls(world)
    ]
    wrong = []
    for url, relation, expected, name in cases:
        client.logout()
        response = client.get(url)
        if not answer_matches(response, expected["anonymous"]):
            wrong.append(f"anonymous GET {url} ({name}): {response.status_code}")
        for role in ROLES:
            client.force_login(world.users[role])
            want = expected[role][0 if relation == OWN else 1]
            response = client.get(url)
            if not answer_matches(response, want):
                wrong.append(
                    f"{role} GET {url} ({name}, {relation} site): {response.status_code}, "
                    f"expected {want}"
                )
            if name not in KEPT_BY_THE_BROWSER and "no-store" not in response.get(
                "Cache-Control", ""
            ):
                wrong.append(f"{role} GET {url} ({name}): no Cache-Control: no-store")
    assert len(cases) > 80
    assert not wrong, "\n".join(wrong)
