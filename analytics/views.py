"""Analytics pages for PIs, data managers and administrators (INTERFACES.md section 5).

Everything shown comes from the latest complete snapshot of a scope the user may see (the whole
registry, or one of their sites), with its date and fingerprint. The tables are formatted here
(numbers to text, in the user's language), so the templates only lay them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analytics import figures, services, snapshot_figures
from analytics.comparison_tables import Table, comparison_tables
from analytics.comparison_tables import hazard as hazard_text
from analytics.models import Snapshot, Status
from analytics.report import services as report_services
from analytics.report.context import Month
from analytics.report.formatting import POOLED, months, number, p_value, percent
from registry.clock import today
from registry.models import Site
from registry.models.choices import (
    ARM,
    DISEASE_BURDEN,
    PH_STATUS,
    RELAPSE_STATUS,
    SEX,
    TRANSPLANT_TYPE,
)
from registry.models.quality import QueryKind
from registry.permissions import Action, can

REGISTRY_SCOPE = "registry"  # the URL name of the whole-registry scope
NOT_AVAILABLE = "–"
NOT_REACHED = "NR"


# --- scopes and permissions ----------------------------------------------------------------------


def scope_slug(site: Site | None) -> str:
    return REGISTRY_SCOPE if site is None else site.code


def visible_scope(request: HttpRequest, slug: str) -> Site | None:
    """The scope named in the URL, if the user may see it: 403 for a role or a whole registry
    that is not theirs, 404 for another site."""
    if not can(request.user, Action.ANALYTICS):
        raise PermissionDenied(_("Analytics are for data managers, PIs and administrators."))
    visible = services.scopes_visible_to(request.user)
    if slug == REGISTRY_SCOPE:
        if None not in visible:
            raise PermissionDenied(_("The whole registry's analytics need access to every site."))
        return None
    for site in visible:
        if site is not None and site.code == slug:
            return site
    raise Http404(_("No such site among yours."))


def visible_snapshot(request: HttpRequest, pk: int) -> Snapshot:
    snapshot = get_object_or_404(Snapshot.objects.select_related("site", "requested_by"), pk=pk)
    visible_scope(request, scope_slug(snapshot.site))
    return snapshot


# --- pages -------------------------------------------------------------------------------------


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The scopes the user may see, each with its latest complete snapshot."""
    if not can(request.user, Action.ANALYTICS):
        raise PermissionDenied(_("Analytics are for data managers, PIs and administrators."))
    scopes = services.scopes_visible_to(request.user)
    latest = latest_by_scope(scopes)
    rows = [
        {
            "slug": scope_slug(site),
            "label": services.scope_label(site),
            "snapshot": latest.get(None if site is None else site.pk),
        }
        for site in scopes
    ]
    context = {"rows": rows, "may_recompute": bool(services.recompute_scopes(request.user))}
    return render(request, "analytics/index.html", context)


def latest_by_scope(scopes: Sequence[Site | None]) -> dict[int | None, Snapshot]:
    """The latest complete snapshot of each scope, in one query (without the large output)."""
    snapshots = (
        Snapshot.objects.complete()
        .filter(in_scopes(scopes))
        .defer("output")
        .order_by("-finished_at", "-pk")
    )
    latest: dict[int | None, Snapshot] = {}
    for snapshot in snapshots:
        latest.setdefault(snapshot.site_id, snapshot)
    return latest


def in_scopes(scopes: Sequence[Site | None]) -> Q:
    """Snapshots of these scopes (None: the whole registry's)."""
    condition = Q(site__in=[site.pk for site in scopes if site is not None])
    return condition | Q(site__isnull=True) if None in scopes else condition


@login_required
@require_GET
def scope_detail(request: HttpRequest, scope: str) -> HttpResponse:
    """The study's tables and plots for one scope, from its latest complete snapshot."""
    site = visible_scope(request, scope)
    snapshot = Snapshot.objects.latest_complete(site)
    context: dict[str, Any] = {
        "scope": scope,
        "scope_label": services.scope_label(site),
        "snapshot": snapshot,
        "may_recompute": services.may_recompute(request.user, site),
    }
    if snapshot is not None:
        context["tables"] = study_tables(snapshot.output)
        context["figures"] = figure_list(snapshot)
    else:
        # Never computed yet (a new site, a registry just set up): computed now, not tonight.
        computing = services.scope_computation_request(user=request.user, site=site)
        if computing is not None and computing.status == Status.COMPLETE:
            return redirect("analytics:scope", scope=scope)  # computed in this request (eager)
        context["computing"] = computing
        if computing is not None:
            context["poll_url"] = reverse("analytics:computation", args=[computing.pk])
    return render(request, "analytics/scope.html", context)


@login_required
@require_GET
def figure(request: HttpRequest, pk: int, name: str, language: str | None = None) -> HttpResponse:
    """One figure of a complete snapshot as SVG, kept with the snapshot (drawn when it was
    computed). The URL names the snapshot and the language, so what a browser keeps under it
    never changes; without a language (older links) it is the page's language, not kept."""
    snapshot = visible_snapshot(request, pk)
    in_url = language is not None
    language = language or get_language()
    if (
        snapshot.status != Status.COMPLETE
        or not figures.drawable(name, snapshot.output)
        or language not in LANGUAGES
    ):
        raise Http404(_("No such figure."))
    etag = f'"{snapshot.pk}-{name}-{language}"'
    if in_url and request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        svg = snapshot_figures.figure_svg(snapshot, name, language)
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    if in_url:
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=31536000, immutable"
    else:
        response["Cache-Control"] = "private, no-cache"
        response["Vary"] = "Cookie, Accept-Language"
    response["Content-Language"] = language
    return response


@login_required
@require_http_methods(["GET", "POST"])
def recompute(request: HttpRequest) -> HttpResponse:
    """ "Recompute now" for data managers and administrators: one computation at a time."""
    scopes = services.recompute_scopes(request.user)
    if not scopes:
        raise PermissionDenied(_("Only data managers and administrators may recompute."))
    if request.method == "POST":
        wanted = request.POST.get("scope", "")
        if wanted not in [scope_slug(site) for site in scopes]:
            raise PermissionDenied(_("You may not recompute the analytics of this scope."))
        site = next(site for site in scopes if scope_slug(site) == wanted)
        try:
            snapshot = services.recompute_request(user=request.user, site=site)
        except services.ComputationRunning as running:
            messages.error(request, str(running))
            return redirect("analytics:recompute")
        return redirect("analytics:computation", pk=snapshot.pk)
    recent = recent_computations(scopes)
    context = {
        "scopes": [(scope_slug(site), services.scope_label(site)) for site in scopes],
        "running": next((s for s in recent if s.status == Status.RUNNING), None),
        "recent": recent,
    }
    return render(request, "analytics/recompute.html", context)


def recent_computations(scopes: Sequence[Site | None], limit: int = 10) -> list[Snapshot]:
    return list(
        Snapshot.objects.filter(in_scopes(scopes))
        .select_related("site", "requested_by")
        .defer("output")
        .order_by("-started_at", "-pk")[:limit]
    )


@login_required
@require_GET
def computation(request: HttpRequest, pk: int) -> HttpResponse:
    """A computation's progress (polled by htmx while it runs) and its outcome."""
    snapshot = visible_snapshot(request, pk)
    context = {
        "snapshot": snapshot,
        "scope": scope_slug(snapshot.site),
        "scope_label": services.scope_label(snapshot.site),
        "poll_url": reverse("analytics:computation", args=[snapshot.pk]),
    }
    template = "analytics/_progress.html" if request.htmx else "analytics/computation.html"
    return render(request, template, context)


# --- figures -------------------------------------------------------------------------------------

FIGURES = figures.FIGURES  # the names a figure URL may carry
LANGUAGES = tuple(code for code, _name in settings.LANGUAGES)


def arm_labels() -> dict[str, str]:
    return {value: str(label) for value, label in ARM}


def figure_list(snapshot: Snapshot) -> dict[str, list[dict[str, str]]]:
    """The figures of the page, each at the URL of this snapshot in the page's language."""
    language = get_language()

    def entry(name: str, alt: str) -> dict[str, str]:
        url = reverse("analytics:figure", args=[snapshot.pk, language, name])
        return {"url": url, "alt": alt}

    return {
        "crs": [entry("crs-grades", _("Bar chart of the CRS grade distribution by arm"))],
        "survival": [
            entry("pfs", _("Kaplan-Meier plot of progression-free survival by arm")),
            entry("os", _("Kaplan-Meier plot of overall survival by arm")),
        ],
        "transplant": [
            entry(
                f"sm-ucbt-{arm}",
                _("Simon-Makuch plot of PFS by UCBT status, %(arm)s") % {"arm": label},
            )
            for arm, label in arm_labels().items()
        ],
        "competing": [
            entry(
                "competing-risks",
                _("Stacked cumulative incidence of relapse and non-relapse mortality by arm"),
            )
        ]
        if figures.drawable("competing-risks", snapshot.output)
        else [],
        "balance": [
            entry(
                "balance",
                _("Love plot of standardised mean differences before and after weighting"),
            )
        ]
        if figures.drawable("balance", snapshot.output)
        else [],
    }


# --- numbers to text ----------------------------------------------------------------------------


def interval(bounds: Sequence[float | None], show: Any = percent) -> str:
    low, high = bounds
    if low is None and high is None:
        return NOT_AVAILABLE
    return f"{show(low)} – {show(high)}"


def rate_text(rate: Mapping[str, Any]) -> str:
    return f"{rate['n']}/{rate['N']} ({percent(rate['proportion'])})"


# --- the study's tables ------------------------------------------------------------------------


def study_tables(output: Mapping[str, Any]) -> list[Table]:
    return [
        populations_table(output),
        baseline_table(output),
        rates_table("crs", _("Cytokine release syndrome (CRS-evaluable)"), output["crs"]),
        grades_table("crs-grades", _("CRS grade distribution"), output["crs"]),
        rates_table("icans", _("ICANS (ICANS-evaluable)"), output["icans"]),
        response_table(output),
        *subgroup_tables(output),
        *survival_tables(output),
        *transplant_tables(output),
        *comparison_tables(output),
        completeness_table(output),
    ]


def arm_header(first: str, per_arm: Sequence[str], last: Sequence[str] = ()) -> list[str]:
    header = [first]
    for label in arm_labels().values():
        header += [f"{label}: {column}" if column else label for column in per_arm]
    return header + list(last)


def populations_table(output: Mapping[str, Any]) -> Table:
    table = Table("populations", _("Populations"), arm_header(_("Population"), [""]))
    names = {
        "analysis": _("Analysis set (first treatment per patient)"),
        "crs_evaluable": _("CRS-evaluable (status known)"),
        "icans_evaluable": _("ICANS-evaluable (status known)"),
        "response_evaluable": _("Response-evaluable (assessed by day 90)"),
    }
    for key, name in names.items():
        table.rows.append([name, *(str(output["populations"][arm][key]) for arm in services.ARMS)])
    return table


def baseline_table(output: Mapping[str, Any]) -> Table:
    base = output["baseline"]
    table = Table("baseline", _("Baseline at day 0"), arm_header("", [""], [_("p")]))
    for key, name in (("age", _("Age, median (IQR)")), ("bm_blast_pct", _("Marrow blasts %"))):
        cells = [median_iqr(base[key][arm]) for arm in services.ARMS]
        table.rows.append([name, *cells, p_value(base[key]["p"])])
    yes_no = {"yes": _("yes"), "no": _("no"), "unknown": _("unknown")}
    labelled = {
        "sex": (_("Sex"), dict(SEX)),
        "ph_status": (_("Ph status"), dict(PH_STATUS)),
        "disease_burden": (_("Disease burden"), BURDEN_SHORT),
        "relapse_status": (_("Relapse status"), dict(RELAPSE_STATUS)),
        "prior_hsct": (_("Previous allogeneic HSCT"), yes_no),
    }
    for key, (name, level_names) in labelled.items():
        block = base[key]
        any_unknown = any(block[arm]["unknown"] for arm in services.ARMS)
        levels = [level for level in block[services.ARMS[0]] if level != "unknown" or any_unknown]
        cells = [
            ", ".join(
                f"{level_names.get(level, yes_no.get(level, level))} {block[arm][level]}"
                for level in levels
            )
            for arm in services.ARMS
        ]
        table.rows.append([name, *cells, p_value(base[key]["p"])])
    return table


def median_iqr(summary: Mapping[str, Any]) -> str:
    def one_decimal(value: float | None) -> str:
        return number(value, 1)

    return f"{one_decimal(summary['median'])} ({interval(summary['iqr'], one_decimal)})"


BURDEN_SHORT = {
    "mrd_only": gettext_lazy("MRD-positive only"),
    "morphologic": gettext_lazy("not in remission"),
}


def rate_row(name: str, comparison: Mapping[str, Any]) -> list[str]:
    cells = [name]
    for arm in services.ARMS:
        cells += [rate_text(comparison[arm]), interval(comparison[arm]["ci95"])]
    return [*cells, p_value(comparison["p_fisher"])]


RATE_HEADER = [gettext_lazy("n/N (%)"), gettext_lazy("95% CI")]


def rates_table(key: str, caption: str, block: Mapping[str, Any]) -> Table:
    table = Table(key, caption, arm_header("", [str(c) for c in RATE_HEADER], [_("Fisher p")]))
    table.rows.append(rate_row(_("Any grade (≥ 1)"), block["any"]))
    table.rows.append(rate_row(_("Severe (grade ≥ 3)"), block["severe"]))
    sources = block.get("grade_source", {})
    table.note = _(
        "Grade used: the ASTCT 2019 grade derived from the findings where it exists "
        "(%(derived)s), else the recorded grade (%(recorded)s)."
    ) % {
        "derived": sum(arm.get("derived", 0) for arm in sources.values()),
        "recorded": sum(arm.get("recorded", 0) for arm in sources.values()),
    }
    return table


def grades_table(key: str, caption: str, block: Mapping[str, Any]) -> Table:
    table = Table(key, caption, arm_header(_("Grade"), [""]))
    for grade in map(str, services.GRADES):
        table.rows.append(
            [grade, *(str(block["grade_distribution"][arm][grade]) for arm in services.ARMS)]
        )
    table.note = _("Grade distributions compared by Mann-Whitney U: p %(p)s.") % {
        "p": p_value(block.get("p_grades_mann_whitney"))
    }
    return table


def response_table(output: Mapping[str, Any]) -> Table:
    block = output["response"]
    table = Table(
        "response",
        _("Response by day 90"),
        arm_header("", [str(c) for c in RATE_HEADER], [_("Fisher p")]),
    )
    table.rows += [
        rate_row(_("CR/CRi (response-evaluable)"), block["cr"]),
        rate_row(_("MRD-negative CR (response-evaluable)"), block["mrd_negative_cr"]),
        rate_row(_("MRD-negative CR (intention to treat)"), block["mrd_negative_cr_itt"]),
    ]
    return table


def subgroup_tables(output: Mapping[str, Any]) -> list[Table]:
    factors = {
        "disease_burden": (_("CRS by disease burden"), dict(DISEASE_BURDEN)),
        "relapse_group": (
            _("CRS by relapse group"),
            {
                "not_relapsed": _("Not relapsed (MRD-persistent CR1 or primary refractory)"),
                "first_relapse": _("First relapse"),
                "second_or_later_relapse": _("Second or later relapse"),
            },
        ),
    }
    tables = []
    for factor, (caption, level_names) in factors.items():
        block = output["subgroups"][factor]
        table = Table(
            f"subgroups-{factor}",
            caption,
            arm_header(_("Subgroup"), [str(c) for c in RATE_HEADER], [_("Fisher p")]),
        )
        for level, name in level_names.items():
            table.rows.append(rate_row(f"{name}: {_('any grade')}", block[level]["crs_any"]))
            table.rows.append(rate_row(f"{name}: {_('severe')}", block[level]["crs_severe"]))
        table.note = " ".join(cmh_text(str(name), block["cmh"][key]) for key, name in CMH_NAMES)
        tables.append(table)
    return tables


CMH_NAMES = (("crs_any", gettext_lazy("any grade")), ("crs_severe", gettext_lazy("severe")))


def cmh_text(name: str, cmh: Mapping[str, Any]) -> str:
    return _(
        "Cochran-Mantel-Haenszel, %(name)s: chi-square %(chi2)s, p %(p)s; pooled odds ratio "
        "(blinatumomab vs CAR-T) %(or)s (%(ci)s); Breslow-Day p %(bd)s."
    ) % {
        "name": name,
        "chi2": number(cmh["chi2"]),
        "p": p_value(cmh["p"]),
        "or": number(cmh["or_mh"]),
        "ci": interval(cmh["ci95"], number),
        "bd": p_value(cmh["p_breslow_day"]),
    }


def survival_tables(output: Mapping[str, Any]) -> list[Table]:
    names = {"pfs": _("Progression-free survival"), "os": _("Overall survival")}
    followup = output["survival"]["median_followup_months"]
    tables = []
    for endpoint, caption in names.items():
        block = output["survival"][endpoint]
        table = Table(
            f"survival-{endpoint}",
            caption,
            [
                _("Arm"),
                _("n"),
                _("Events"),
                _("Median, months (95% CI)"),
                _("12 months (95% CI)"),
                _("24 months (95% CI)"),
            ],
        )
        for arm, label in arm_labels().items():
            km = block[arm]
            table.rows.append(
                [
                    label,
                    str(km["n"]),
                    str(km["events"]),
                    "{median} ({low} – {high})".format(
                        median=months(km["median_months"]),
                        low=months(km["median_ci95"][0]),
                        high=months(km["median_ci95"][1]),
                    )
                    if km["n"]
                    else NOT_AVAILABLE,
                    f"{percent(km['rate_12m'])} ({interval(km['rate_12m_ci95'])})",
                    f"{percent(km['rate_24m'])} ({interval(km['rate_24m_ci95'])})",
                ]
            )
        table.note = " ".join(
            [
                _("Log-rank p %(p)s.") % {"p": p_value(block["logrank"].get("p"))},
                _("Cox HR, CAR-T vs blinatumomab: %(hr)s.") % {"hr": hazard_text(block["cox"])},
                _("Adjusted for disease burden and relapse group: %(hr)s.")
                % {"hr": hazard_text(block["cox_adjusted"])},
                _("Median follow-up (reverse Kaplan-Meier), months: %(followup)s.")
                % {
                    "followup": ", ".join(
                        f"{label} {months(followup[arm])}" for arm, label in arm_labels().items()
                    )
                },
            ]
        )
        tables.append(table)
    return tables


def transplant_tables(output: Mapping[str, Any]) -> list[Table]:
    kinds = {
        "any_hsct": _("Any allogeneic HSCT after treatment"),
        "ucbt": dict(TRANSPLANT_TYPE)["ucbt"],
    }
    groups = {**arm_labels(), "pooled": str(POOLED)}
    tables = []
    for kind, caption in kinds.items():
        table = Table(
            f"transplant-{kind}",
            _("PFS and transplant: %(kind)s") % {"kind": caption},
            [
                "",
                _("Transplanted / n"),
                _("Naive log-rank p (BIASED: immortal time)"),
                _("Time-dependent Cox HR (95% CI), p"),
                _("Mantel-Byar p"),
                _("Landmark at day %(days)s: transplanted / not, p")
                % {"days": output["parameters"]["landmark_days"]},
            ],
        )
        for group, label in groups.items():
            tx = output["transplant"][kind][group]
            landmark = tx["landmark"]
            table.rows.append(
                [
                    str(label),
                    f"{tx['n_transplanted']}/{tx.get('n', NOT_AVAILABLE)}",
                    p_value(tx["naive_logrank"]["p"]),
                    hazard_text(tx["time_dependent_cox"]),
                    p_value(tx["mantel_byar"]["p"]),
                    f"{landmark['n_transplanted']} / {landmark['n_not']}, p {p_value(landmark['p'])}",
                ]
            )
        table.note = _(
            "The naive test compares patients ever transplanted with the others from day 0, as "
            "the study did: it is biased in favour of transplant, because a patient had to stay "
            "alive and progression-free until the transplant (immortal time). The time-dependent "
            "Cox model, the Mantel-Byar test and the landmark analysis count each patient as "
            "transplanted only from the transplant on."
        )
        tables.append(table)
    return tables


def completeness_table(output: Mapping[str, Any]) -> Table:
    block = output["completeness"]
    table = Table(
        "completeness",
        _("Data completeness on %(date)s") % {"date": block["as_of"]},
        arm_header("", [""]),
    )
    kinds = dict(QueryKind.choices)
    table.rows.append(
        [
            _("Required fields filled"),
            *(percent(block[arm]["required_fields_filled"]) for arm in services.ARMS),
        ]
    )
    table.rows.append(
        [_("Lost to follow-up"), *(str(block[arm]["lost_to_follow_up"]) for arm in services.ARMS)]
    )
    table.rows.append(
        [
            _("Median days since last contact (alive)"),
            *(number(block[arm]["median_days_since_last_contact"], 0) for arm in services.ARMS),
        ]
    )
    for kind, label in kinds.items():
        counts = [block[arm]["open_queries"].get(kind, 0) for arm in services.ARMS]
        if any(counts):
            table.rows.append([_("Open queries: %(kind)s") % {"kind": label}, *map(str, counts)])
    return table


# --- monthly reports ---------------------------------------------------------------------------


@login_required
@require_GET
def reports(request: HttpRequest) -> HttpResponse:
    """The archive of monthly PDFs of the user's scopes, and rendering this month's now."""
    if not can(request.user, Action.ANALYTICS):
        raise PermissionDenied(_("Reports are for data managers, PIs and administrators."))
    rendering = None
    if request.GET.get("rendering", "").isdigit():
        rendering = (
            report_services.renderings_visible_to(request.user)
            .filter(pk=int(request.GET["rendering"]))
            .first()
        )
    if request.htmx and rendering is not None:  # the progress, polled while it runs
        return render(request, "analytics/_report_progress.html", {"rendering": rendering})
    scopes = services.scopes_visible_to(request.user)
    context = {
        "rendering": rendering,
        "reports": report_services.reports_visible_to(request.user)[:200],
        "scopes": [(scope_slug(site), services.scope_label(site)) for site in scopes],
        "month": str(Month.containing(today())),
        "languages": settings.LANGUAGES,
    }
    return render(request, "analytics/reports.html", context)


@login_required
@require_GET
def report_download(request: HttpRequest, pk: int) -> HttpResponse:
    report = get_object_or_404(report_services.reports_visible_to(request.user), pk=pk)
    pdf = report_services.report_download(report, user=request.user)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{report.download_name}"'
    return response


@login_required
@require_POST
def report_render(request: HttpRequest) -> HttpResponse:
    """Render the current month's report for one of the user's scopes: a worker does it, the
    reports page shows its progress and then the download."""
    site = visible_scope(request, request.POST.get("scope", ""))
    language = request.POST.get("language", "en")
    if language not in report_services.LANGUAGES:
        language = "en"
    try:
        rendering = report_services.rendering_request(
            user=request.user, site=site, month=Month.containing(today()), language=language
        )
    except report_services.RenderingLimit as limit:
        messages.error(request, str(limit))
        return redirect("analytics:reports")
    return redirect(f"{reverse('analytics:reports')}?rendering={rendering.pk}")
