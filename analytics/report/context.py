"""Everything the monthly report shows, from one analytics snapshot and the month's activity.

The numbers come from the snapshot's output (SAP.md section 10) and are formatted by
analytics.report.formatting; the figures are drawn here as SVG. Nothing is computed twice.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.utils.translation import gettext as _

from analytics.comparison_tables import comparison_tables
from analytics.report import formatting as fmt
from registry.models import choices as labels

ARMS = ("blinatumomab", "car_t")


@dataclass(frozen=True)
class Month:
    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> Month:
        """'2024-10' -> the first and last day of October 2024."""
        year, month = (int(part) for part in text.split("-"))
        return cls(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))

    @classmethod
    def containing(cls, day: date) -> Month:
        return cls.parse(f"{day.year}-{day.month:02d}")

    def previous(self) -> Month:
        return Month.containing(self.first - timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.first.year}-{self.first.month:02d}"


def level_label(level: str) -> str:
    """The translated label of an enumeration value as the registry's forms show it."""
    extra = {
        "not_relapsed": _("Not relapsed (MRD-persistent CR1 or primary refractory)"),
        "unknown": _("Unknown"),
        "yes": _("Yes"),
        "no": _("No"),
    }
    if level in extra:
        return str(extra[level])
    for choices in (labels.SEX, labels.PH_STATUS, labels.DISEASE_BURDEN, labels.RELAPSE_STATUS):
        found = dict(choices).get(level)
        if found is not None:
            return str(found)
    return level.replace("_", " ")


def arm_labels() -> dict[str, str]:
    return {"blinatumomab": _("Blinatumomab"), "car_t": _("CAR-T")}


def _rate_rows(block: dict[str, Any], names: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [
        {
            "label": label,
            **{arm: fmt.rate(block[key][arm]) for arm in ARMS},
            "p": fmt.p_value(block[key].get("p_fisher")),
        }
        for key, label in names
    ]


def _baseline_rows(baseline: dict[str, Any]) -> list[dict[str, str]]:
    rows = [{"label": _("Patients"), **{arm: str(baseline["n"][arm]) for arm in ARMS}, "p": ""}]
    for key, label in (
        ("age", _("Age at day 0, median (IQR), years")),
        ("bm_blast_pct", _("Marrow blasts, median (IQR), %")),
    ):
        block = baseline[key]
        rows.append(
            {
                "label": label,
                "p": fmt.p_value(block["p"]),
                **{
                    arm: f"{fmt.number(block[arm]['median'], 1)} ({fmt.interval(block[arm]['iqr'])})"
                    for arm in ARMS
                },
            }
        )
    for key, label in (
        ("sex", _("Sex")),
        ("ph_status", _("Ph (BCR::ABL1)")),
        ("disease_burden", _("Disease burden")),
        ("relapse_status", _("Relapse status")),
        ("prior_hsct", _("Previous allogeneic HSCT")),
    ):
        block = baseline[key]
        rows.append(
            {
                "label": label,
                "p": fmt.p_value(block["p"]),
                "heading": True,
                **{arm: "" for arm in ARMS},
            }
        )
        for level in block[ARMS[0]]:
            if all(block[arm].get(level, 0) == 0 for arm in ARMS):
                continue
            rows.append(
                {
                    "label": level_label(level),
                    "p": "",
                    **{arm: str(block[arm].get(level, 0)) for arm in ARMS},
                }
            )
    return rows


def _km_rows(block: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for arm in ARMS:
        km = block[arm]
        rows.append(
            {
                "arm": arm_labels()[arm],
                "n": km["n"],
                "events": km["events"],
                "median": f"{fmt.months(km['median_months'])} ({fmt.interval(km['median_ci95'])})",
                "rate_12m": f"{fmt.percent(km['rate_12m'])} "
                f"({fmt.interval(km['rate_12m_ci95'], as_percent=True)})",
                "rate_24m": f"{fmt.percent(km['rate_24m'])} "
                f"({fmt.interval(km['rate_24m_ci95'], as_percent=True)})",
            }
        )
    return rows


def _cox_text(cox: dict[str, Any] | None) -> str:
    if not cox or cox.get("hr") is None:
        return fmt.not_estimable((cox or {}).get("reason"))
    return (
        f"HR {fmt.number(cox['hr'])} (95% CI {fmt.interval(cox['ci95'], digits=2)}), "
        f"p {fmt.p_value(cox['p'])}"
    )


def _transplant_rows(transplant: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for kind, kind_label in (("any_hsct", _("Any allogeneic HSCT")), ("ucbt", _("UCBT"))):
        for group in (*ARMS, "pooled"):
            block = transplant[kind].get(group)
            if not block:
                continue
            landmark = block["landmark"]
            rows.append(
                {
                    "kind": kind_label,
                    "group": arm_labels().get(group, str(fmt.POOLED)),
                    "n_transplanted": block["n_transplanted"],
                    "naive": f"χ² {fmt.number(block['naive_logrank']['chi2'])}, "
                    f"p {fmt.p_value(block['naive_logrank']['p'])}",
                    "td_cox": _cox_text(block["time_dependent_cox"]),
                    "mantel_byar": f"χ² {fmt.number(block['mantel_byar']['chi2'])}, "
                    f"p {fmt.p_value(block['mantel_byar']['p'])}",
                    "landmark": f"{landmark['n_transplanted']} / {landmark['n_not']}, "
                    f"p {fmt.p_value(landmark['p'])}",
                }
            )
    return rows


def _subgroup_rows(subgroups: dict[str, Any]) -> list[dict[str, str]]:
    names = {"disease_burden": _("Disease burden"), "relapse_group": _("Relapse group")}
    rows = []
    for factor, levels in subgroups.items():
        for level, block in levels.items():
            if level == "cmh":
                continue
            rows.append(
                {
                    "factor": names.get(factor, factor),
                    "level": level_label(level),
                    "any": {arm: fmt.rate(block["crs_any"][arm]) for arm in ARMS},
                    "p": fmt.p_value(block["crs_any"].get("p_fisher")),
                    "severe": {arm: fmt.rate(block["crs_severe"][arm]) for arm in ARMS},
                    "p_severe": fmt.p_value(block["crs_severe"].get("p_fisher")),
                }
            )
        cmh = levels.get("cmh", {}).get("crs_any", {})
        rows.append(
            {
                "factor": names.get(factor, factor),
                "level": "CMH",
                "cmh": True,
                "text": f"χ² {fmt.number(cmh.get('chi2'))}, p {fmt.p_value(cmh.get('p'))}, "
                f"OR(MH) {fmt.number(cmh.get('or_mh'))} "
                f"(95% CI {fmt.interval(cmh.get('ci95'), digits=2)}), "
                f"Breslow-Day p {fmt.p_value(cmh.get('p_breslow_day'))}",
            }
        )
    return rows


# The report's figures: those of the pages, kept with the snapshot (analytics.snapshot_figures),
# by the names the report's template uses.
REPORT_FIGURES = {
    "pfs": "pfs",
    "os": "os",
    "crs_grades": "crs-grades",
    "simon_makuch": "sm-ucbt-pooled",
    "competing_risks": "competing-risks",
    "balance": "balance",
}


def methods_parameters(snapshot) -> dict[str, Any]:
    parameters = snapshot.parameters or {}
    return {
        "landmark_days": parameters.get("landmark_days", 90),
        "alpha": parameters.get("alpha", 0.05),
        "days_per_month": parameters.get("days_per_month", 30.4375),
    }


def report_context(
    *,
    snapshot,
    month: Month,
    scope_label: str,
    sites: list[str],
    activity: dict[str, Any],
    figures: dict[str, str],
) -> dict[str, Any]:
    """`figures`: the SVG of each of REPORT_FIGURES, in the report's language."""
    output = snapshot.output
    crs, icans, response = output["crs"], output["icans"], output["response"]
    survival = output["survival"]
    return {
        "scope_label": scope_label,
        "sites": sites,
        "month": str(month),
        "month_first": month.first,
        "month_last": month.last,
        "snapshot": snapshot,
        "cut_off": output.get("completeness", {}).get("as_of") or snapshot.finished_at.date(),
        "arms": arm_labels(),
        "populations": output["populations"],
        "population_labels": [
            ("analysis", _("Analysis set")),
            ("crs_evaluable", _("CRS-evaluable")),
            ("icans_evaluable", _("ICANS-evaluable")),
            ("response_evaluable", _("Response-evaluable")),
        ],
        "endpoint_labels": [("pfs", _("Progression-free survival")), ("os", _("Overall survival"))],
        "activity": activity,
        "baseline_rows": _baseline_rows(output["baseline"]) if "baseline" in output else [],
        "toxicity_rows": _rate_rows(
            crs, [("any", _("CRS, any grade")), ("severe", _("CRS, grade ≥ 3"))]
        )
        + _rate_rows(icans, [("any", _("ICANS, any grade")), ("severe", _("ICANS, grade ≥ 3"))]),
        "response_rows": _rate_rows(
            response,
            [
                ("cr", _("CR/CRi (response-evaluable)")),
                ("mrd_negative_cr", _("MRD-negative CR (response-evaluable)")),
                ("mrd_negative_cr_itt", _("MRD-negative CR (all treated)")),
            ],
        ),
        "subgroup_rows": _subgroup_rows(output["subgroups"]),
        "subgroup_tables": [(_("Any CRS"), "any", "p"), (_("CRS grade ≥ 3"), "severe", "p_severe")],
        "survival": {
            endpoint: {
                "rows": _km_rows(survival[endpoint]),
                "logrank": f"χ² {fmt.number(survival[endpoint]['logrank']['chi2'])}"
                f", p {fmt.p_value(survival[endpoint]['logrank']['p'])}",
                "cox": _cox_text(survival[endpoint]["cox"]),
                "cox_adjusted": _cox_text(survival[endpoint].get("cox_adjusted")),
            }
            for endpoint in ("pfs", "os")
        },
        "median_followup": {
            arm: fmt.months(survival["median_followup_months"].get(arm)) for arm in ARMS
        },
        "transplant_rows": _transplant_rows(output["transplant"]),
        # SAP 12-14: the same tables as the analytics page's (analytics.comparison_tables).
        "comparison_tables": comparison_tables(output),
        "has_hematotoxicity": "hematotoxicity" in output,
        "completeness": output.get("completeness", {}),
        "figures": figures,
        "parameters": methods_parameters(snapshot),
    }
