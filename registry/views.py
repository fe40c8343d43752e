"""The research nurses' pages: worklist, patients, timeline, and a form for every record.

Every read goes through registry.selectors (site-scoped: another site's patient is a 404) and
every write through registry.services via registry.forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_GET, require_POST

from registry import forms as record_forms
from registry import services
from registry.clock import today
from registry.domain import crs, icans
from registry.domain.vocabulary import DeathCause
from registry.health import health
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Patient,
    QueryKind,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Site,
    Transplant,
    Treatment,
)
from registry.models import choices as labels
from registry.permissions import Action, can, user_site_ids
from registry.selectors import (
    labs_due_for,
    open_queries,
    patient_list,
    patient_page,
    records_visible_to,
    site_id_of,
    worklist_cache_key,
    worklist_for,
    worklist_sites,
)
from registry.timeline_html import timeline_html
from registry.worklist_rows import due_rows_html, overdue_rows_html, worklist_rows


@dataclass(frozen=True)
class RecordKind:
    model: type[Model]
    form: type[record_forms.ClinicalForm]
    parent: type[Model] | None  # what a new record hangs off
    title: str


KINDS: dict[str, RecordKind] = {
    "patient": RecordKind(Patient, record_forms.PatientForm, None, "patient"),
    "treatment": RecordKind(Treatment, record_forms.TreatmentForm, Patient, "treatment"),
    "death": RecordKind(Death, record_forms.DeathForm, Patient, "death"),
    "crs": RecordKind(CrsEpisode, record_forms.CrsEpisodeForm, Treatment, "CRS episode"),
    "icans": RecordKind(IcansEpisode, record_forms.IcansEpisodeForm, Treatment, "ICANS episode"),
    "response": RecordKind(
        ResponseAssessment, record_forms.ResponseForm, Treatment, "response assessment"
    ),
    "transplant": RecordKind(Transplant, record_forms.TransplantForm, Treatment, "transplant"),
    "contact": RecordKind(
        FollowUpContact, record_forms.ContactForm, Treatment, "follow-up contact"
    ),
    "relapse": RecordKind(Relapse, record_forms.RelapseForm, Treatment, "relapse"),
    # The late events (DOMAIN.md "Hematotoxicity and late effects")
    "infection": RecordKind(Infection, record_forms.InfectionForm, Treatment, "infection"),
    "iec_hs": RecordKind(IecHsEpisode, record_forms.IecHsForm, Treatment, "IEC-HS episode"),
    "ivig": RecordKind(
        IvigCourse, record_forms.IvigCourseForm, Treatment, "immunoglobulin replacement course"
    ),
    "persistence": RecordKind(
        CarPersistence, record_forms.CarPersistenceForm, Treatment, "CAR persistence assessment"
    ),
    "second_cancer": RecordKind(
        SecondCancer, record_forms.SecondCancerForm, Treatment, "second cancer"
    ),
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Each role lands on the page of its day (after signing in, and on "/"): a research nurse
    on the worklist, a PI on the analytics; data managers and administrators, who clean the
    data, on their queries and data exchange."""
    user = request.user
    if can(user, Action.RESOLVE_QUERIES) or can(user, Action.IMPORT):
        return render(
            request,
            "registry/home.html",
            {"open_queries": open_queries(user=user).count()},
        )
    if can(user, Action.ANALYTICS):
        return redirect("analytics:index")
    return redirect("worklist")


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    """What is due at the user's sites: visits due and overdue, lost patients, open queries."""
    day, lost_page = today(), request.GET.get("lost_page")
    # The visits are computed from every living patient of the user's sites: cached, rendered,
    # under a key that changes with any write of those sites' data and with the day.
    # The page differs for those who may not record a contact (a PI sees no such link).
    may_edit = can(request.user, Action.EDIT)
    sites = worklist_sites(user=request.user)
    key = worklist_cache_key(
        user=request.user,
        today=day,
        variant=f"{translation.get_language()}|{lost_page!r}|{may_edit}",
        sites=sites,
    )
    visits = cache.get(key)
    if visits is None:  # the lines of the patients written since are computed again
        worklist = worklist_for(user=request.user, today=day, sites=sites)
        # Due and overdue visits are all shown, first; the patients lost to follow-up (who
        # accumulate with the registry) a page at a time.
        lost = Paginator(worklist.lost, LOST_PER_PAGE).get_page(lost_page)
        visits = render_to_string(
            "registry/_worklist_visits.html",
            {
                "due": worklist.due,
                "due_rows": due_rows_html(worklist_rows(worklist.due, may_edit=may_edit)),
                "overdue": worklist.overdue,
                "overdue_rows": overdue_rows_html(
                    worklist_rows(worklist.overdue, may_edit=may_edit)
                ),
                "lost": lost,
                "lost_rows": worklist_rows(lost, may_edit=may_edit),
                "lost_paged": lost_page is not None,
                "labs_due": labs_due_for(user=request.user, today=day, sites=sites),
                "may_edit": may_edit,
            },
        )
        cache.set(key, visits, WORKLIST_CACHE_SECONDS)
    # The open data-quality queries (thousands in a large registry after the nightly refresh)
    # a page at a time, the newest first.
    queries = Paginator(
        open_queries(user=request.user).order_by("-opened_at", "-pk"), QUERIES_PER_PAGE
    ).get_page(request.GET.get("queries_page"))
    context = {
        "visits": visits,
        "queries": queries,
        "query_links": [(query, resolving_url(query)) for query in queries],
        "queries_paged": "queries_page" in request.GET,
        "today": day,
    }
    return render(request, "registry/worklist.html", context)


WORKLIST_CACHE_SECONDS = 24 * 60 * 60
QUERIES_PER_PAGE = 50
LOST_PER_PAGE = 50


def resolving_url(query) -> str:
    """The form that fixes the data behind a data-quality query, at the field the query is
    about: the URL's fragment is the field's id (`#id_<field>`), which the page focuses."""
    details = query.params or {}
    treatment = details.get("treatment")
    if treatment is None and query.key.startswith("t"):  # "t<pk>" or "t<pk>:<visit>"
        treatment = query.key[1:].split(":")[0]
    match query.kind:
        case QueryKind.BASELINE_INCOMPLETE if treatment:
            missing = details.get("fields") or ["disease_burden"]
            return reverse("record-edit", args=["treatment", treatment]) + f"#id_{missing[0]}"
        case QueryKind.CRS_STATUS_UNKNOWN if treatment:
            return reverse("record-edit", args=["treatment", treatment]) + "#id_crs_status"
        case QueryKind.RESPONSE_NOT_ASSESSED if treatment:
            return reverse("record-new", args=[treatment, "response"]) + "#id_date"
        case (
            QueryKind.FOLLOW_UP_OVERDUE
            | QueryKind.LOST_TO_FOLLOW_UP
            | QueryKind.CONTACT_BEFORE_EVENT
        ) if treatment:
            # a contact: the visit missed, the patient seen again, or seen after the event
            return reverse("record-new", args=[treatment, "contact"]) + "#id_date"
        case QueryKind.GRADE_MISMATCH:
            kind = "crs" if query.key.startswith("crsepisode") else "icans"
            episode = query.key.removeprefix(f"{kind}episode")
            return reverse("record-edit", args=[kind, episode]) + "#id_recorded_grade"
        case QueryKind.ICAHT_NOT_GRADABLE | QueryKind.IVIG_WITHOUT_IGG if treatment:
            # the ANC (or IgG) values are entered on the treatment's laboratory grid
            return reverse("treatment-labs", args=[treatment]) + "#id_pasted"
        case QueryKind.PERSISTENCE_NOT_ASSESSED if treatment:
            return reverse("record-new", args=[treatment, "persistence"]) + "#id_date"
        case QueryKind.FATAL_EVENT_WITHOUT_DEATH:
            # the death record: recorded (its date first), or corrected (its cause, its date)
            if not details.get("death_id"):
                return reverse("record-new", args=[query.patient_id, "death"]) + "#id_date"
            field = "date" if (details.get("death") or "") < details.get("onset", "") else "cause"
            return reverse("record-edit", args=["death", details["death_id"]]) + f"#id_{field}"
    return reverse("patient-detail", args=[query.patient_id])


class KeysFirstPaginator(Paginator):
    """Sorts and slices the keys of a queryset alone, then loads that page's rows with their
    annotations: the database computes the subqueries of 25 rows, not of every row sorted."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        keys = self.object_list.values("pk")[bottom:top]
        return self._get_page(list(self.object_list.filter(pk__in=keys)), number, self)


@login_required
def patients(request: HttpRequest) -> HttpResponse:
    filters = {
        name: request.GET.get(name, "") for name in ("study_id", "arm", "site", "vital_status")
    }
    page = KeysFirstPaginator(patient_list(user=request.user, **filters), 25).get_page(
        request.GET.get("page")
    )
    sites = user_site_ids(request.user)
    context = {
        "page": page,
        "filters": filters,
        "arms": labels.ARM,
        "sites": Site.objects.all() if sites is None else Site.objects.filter(pk__in=sites),
        "query_string": urlencode({name: value for name, value in filters.items() if value}),
    }
    return render(request, "registry/patient_list.html", context)


@login_required
def patient_detail(request: HttpRequest, pk: int) -> HttpResponse:
    page = patient_page(pk, user=request.user)
    if page is None:
        raise Http404  # no such patient, or not at one of the user's sites: the same answer
    can_edit = can(request.user, Action.EDIT, page.patient.site_id)
    context = {
        "patient": page.patient,
        "can_edit": can_edit,
        "timeline": [
            (treatment, timeline_html(entries, can_edit=can_edit))
            for treatment, entries in page.timeline
        ],
        "death": page.death,
        "queries": page.open_queries,
    }
    return render(request, "registry/patient_detail.html", context)


def _edit_form(
    request: HttpRequest, kind: RecordKind, record: Model, *, title: str, back: str
) -> HttpResponse:
    if not can(request.user, Action.EDIT, site_id_of(record)):
        raise PermissionDenied(_("You may read but not change data at this site."))
    form_class = kind.form
    if kind.model is Death and record.pk is None:
        form_class = fatal_episode_form(record.patient)
    if kind.model is Patient:
        allowed = user_site_ids(request.user)
        form = form_class(request.POST or None, instance=record)
        if allowed is not None:
            form.fields["site"].queryset = Site.objects.filter(pk__in=allowed)
    else:
        form = form_class(
            request.POST or None,
            instance=record,
            initial={"date": today()} if record.pk is None else None,
        )
    if request.method == "POST" and form.is_valid():
        saved = _save(form, kind, user=request.user)
        if saved is not None:
            messages.success(request, _("Saved."))
            return redirect("patient-detail", saved.patient.pk)
    kind_name = next(name for name, known in KINDS.items() if known is kind)
    # The records of a treatment show its day 0, so every date can be read as a day number.
    treatment = record.treatment if kind.parent is Treatment else None
    grader, live, grade_url = GRADERS.get(kind_name), None, None
    if grader is not None:
        episode = (
            _findings_so_far(grader.model, [*grader.findings, "onset"], request.POST)
            if request.method == "POST"
            else record
        )
        live = live_grade(grader, episode, treatment)
        grade_url = f"{reverse(f'{kind_name}-grade')}?treatment={treatment.pk}"
    return render(
        request,
        "registry/record_form.html",
        {
            "form": form,
            "title": title,
            "back": back,
            "kind": kind,
            "record": record,
            "treatment": treatment,
            "grade_url": grade_url,
            "live": live,
        },
    )


def _save(form, kind: RecordKind, *, user):
    if kind.model is Death and form.instance.pk is None and form.cleaned_data.get("fatal_episode"):
        try:
            return services.death_record(
                patient=form.instance.patient,
                user=user,
                date=form.cleaned_data["date"],
                cause=form.cleaned_data["cause"],
                fatal_episode=form.cleaned_data["fatal_episode"],
            )
        except services.ValidationError as error:
            record_forms.add_service_errors(form, error)
            return None
    try:
        return form.save_through_services(user=user)
    except services.StaleVersion as stale:
        form.add_error(None, str(stale))
        return None


def fatal_episode_form(patient: Patient) -> type[record_forms.DeathForm]:
    """The death form, with a choice of the fatal CRS or ICANS episode for those causes."""
    episodes = [
        *CrsEpisode.objects.filter(treatment__patient=patient),
        *IcansEpisode.objects.filter(treatment__patient=patient),
    ]

    class DeathWithFatalEpisodeForm(record_forms.DeathForm):
        fatal_episode = forms.TypedChoiceField(
            label=_("Fatal episode (for a death from CRS or ICANS)"),
            required=False,
            choices=[("", "—"), *[(f"{type(e).__name__}:{e.pk}", str(e)) for e in episodes]],
            coerce=lambda value: next(e for e in episodes if f"{type(e).__name__}:{e.pk}" == value),
            empty_value=None,
        )

        def clean(self):
            cleaned = super().clean()
            cause = cleaned.get("cause")
            if cause in (DeathCause.CRS, DeathCause.ICANS) and not cleaned.get("fatal_episode"):
                self.add_error("fatal_episode", _("Choose the fatal episode for this cause."))
            return cleaned

    return DeathWithFatalEpisodeForm


@login_required
def record_new(
    request: HttpRequest, parent_pk: int | None = None, kind_name: str = "patient"
) -> HttpResponse:
    kind = KINDS.get(kind_name)
    if kind is None:
        raise_404()
    if kind.parent is None:
        record = kind.model()
        back = reverse("patients")
    else:
        parent = get_object_or_404(records_visible_to(kind.parent, user=request.user), pk=parent_pk)
        record = kind.model(**{kind.parent._meta.model_name: parent})
        back = reverse("patient-detail", args=[record.patient.pk])
    return _edit_form(
        request, kind, record, title=_("New %(kind)s") % {"kind": _(kind.title)}, back=back
    )


@login_required
def record_edit(request: HttpRequest, kind_name: str, pk: int) -> HttpResponse:
    kind = KINDS.get(kind_name)
    if kind is None:
        raise_404()
    record = get_object_or_404(records_visible_to(kind.model, user=request.user), pk=pk)
    return _edit_form(
        request,
        kind,
        record,
        title=_("Edit %(kind)s") % {"kind": _(kind.title)},
        back=reverse("patient-detail", args=[record.patient.pk]),
    )


def raise_404():
    raise Http404(_("No such kind of record."))


CRS_FINDINGS = [
    "max_temperature_c",
    "fever_masked",
    "hypotension",
    "vasopressors",
    "vasopressin",
    "oxygen",
    "o2_flow_l_min",
    "died_of_crs",
]
ICANS_FINDINGS = [
    "ice_score",
    "consciousness",
    "seizure",
    "motor_weakness",
    "cerebral_oedema",
    "died_of_icans",
]


@dataclass(frozen=True)
class Grader:
    """How an episode's live ASTCT grade is derived: its model, its findings, the pure
    functions of registry.domain that grade them and name what is missing."""

    model: type[Model]
    findings: list[str]
    grade: Callable[[Any], int | None]
    missing: Callable[[Any], tuple[str, ...]]


GRADERS: dict[str, Grader] = {
    "crs": Grader(CrsEpisode, CRS_FINDINGS, crs.crs_grade, crs.missing_findings),
    "icans": Grader(IcansEpisode, ICANS_FINDINGS, icans.icans_grade, icans.missing_findings),
}


def _findings_so_far(model: type[Model], fields: list[str], data) -> Model:
    """An unsaved episode holding the findings typed so far that are valid on their own."""
    form = forms.modelform_factory(model, fields=fields)(data)
    form.is_valid()  # only the findings matter here; the other errors are shown when saving
    return model(**{name: value for name, value in form.cleaned_data.items() if value is not None})


def live_grade(grader: Grader, episode: Model, treatment: Treatment | None) -> dict[str, Any]:
    """What the grade box shows: the grade, or the findings it waits for; and the day of the
    onset counted from the treatment's day 0."""
    findings = episode.findings()
    missing = grader.missing(findings)
    onset = getattr(episode, "onset", None)
    return {
        "grade": grader.grade(findings),
        "complete": not missing,
        "missing": pgettext("between the items of a list", ", ").join(
            str(capfirst(grader.model._meta.get_field(name).verbose_name)) for name in missing
        ),
        "onset_day": (onset - treatment.day0).days if onset and treatment else None,
    }


def _grade(request: HttpRequest, kind_name: str) -> HttpResponse:
    """The ASTCT grade of the findings typed so far, by the same pure function as the save."""
    grader = GRADERS[kind_name]
    treatment = None
    if (treatment_pk := request.GET.get("treatment", "")).isdigit():
        visible = records_visible_to(Treatment, user=request.user).filter(pk=treatment_pk)
        treatment = visible.only("pk", "day0").first()
    episode = _findings_so_far(grader.model, [*grader.findings, "onset"], request.POST)
    return render(request, "registry/partials/grade.html", live_grade(grader, episode, treatment))


@login_required
@require_POST
def crs_grade(request: HttpRequest) -> HttpResponse:
    return _grade(request, "crs")


@login_required
@require_POST
def icans_grade(request: HttpRequest) -> HttpResponse:
    return _grade(request, "icans")


@login_required
@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Switch the language and remember it for this user."""
    language = request.POST.get("language", "")
    if language not in dict(translation.trans_real.get_languages()):
        language = "en"
    request.user.language = language
    request.user.save(update_fields=["language"])
    translation.activate(language)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("home")
    return redirect(target)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker, latest snapshot age and outbox backlog, for load balancers and
    monitoring (registry.health); says nothing about patients."""
    report = health()
    response = JsonResponse(report.as_json(), status=report.http_status)
    response["Cache-Control"] = "no-store"
    return response
