"""The tables of SAP sections 12-14 (competing risks, the adjusted comparison of the arms,
RMST), as the analytics page and the monthly report both print them: built once here from the
snapshot's output, so that the two never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from analytics.report.formatting import DASH, not_estimable, number, p_value, percent, rate
from registry.models.choices import ARM, DISEASE_BURDEN, PH_STATUS, SEX

ARMS = ("blinatumomab", "car_t")


@dataclass
class Table:
    """A table ready to print: a caption, a header row and rows of text cells."""

    key: str
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def arm_labels() -> dict[str, str]:
    return {value: str(label) for value, label in ARM}


def _interval(bounds, show=percent) -> str:
    low, high = (bounds or [None, None])[:2]
    if low is None and high is None:
        return DASH
    return f"{show(low)} – {show(high)}"


def hazard(model: Mapping[str, Any] | None) -> str:
    """'0.62 (0.41 – 0.95), p 0.028', or why there is no estimate."""
    if not model or model.get("hr") is None:
        return not_estimable((model or {}).get("reason"))
    return f"{number(model['hr'])} ({_interval(model['ci95'], number)}), p {p_value(model['p'])}"


def cause_names() -> dict[str, str]:
    return {"relapse": _("Relapse or progression"), "nrm": _("Non-relapse mortality")}


def competing_risks_table(output: Mapping[str, Any]) -> Table:
    block = output["competing_risks"]
    table = Table(
        "competing-risks",
        _("Relapse and non-relapse mortality (competing risks)"),
        [
            _("Cause"),
            _("Arm"),
            _("n"),
            _("Events"),
            _("Competing events"),
            _("Cumulative incidence at 12 months (95% CI)"),
            _("Cumulative incidence at 24 months (95% CI)"),
        ],
    )
    notes = []
    for cause, name in cause_names().items():
        for arm, label in arm_labels().items():
            cif = block[cause][arm]
            table.rows.append(
                [
                    name,
                    label,
                    str(cif["n"]),
                    str(cif["events"]),
                    str(cif["competing"]),
                    f"{percent(cif['at_12m'])} ({_interval(cif['at_12m_ci95'])})",
                    f"{percent(cif['at_24m'])} ({_interval(cif['at_24m_ci95'])})",
                ]
            )
        gray = block[cause]["gray"]
        notes.append(
            _(
                "%(cause)s: Gray's test p %(gray)s; Fine-Gray subdistribution HR, CAR-T vs "
                "blinatumomab, %(fine_gray)s; cause-specific Cox HR %(cause_specific)s."
            )
            % {
                "cause": name,
                "gray": p_value(gray.get("p")) if gray.get("p") is not None else DASH,
                "fine_gray": hazard(block[cause]["fine_gray"]),
                "cause_specific": hazard(block[cause]["cause_specific_cox"]),
            }
        )
    table.note = " ".join(notes)
    return table


def adjusted_table(output: Mapping[str, Any], crude: Mapping[str, Any]) -> Table:
    """The IPTW comparison beside the crude one (`crude`: the snapshot's survival block)."""
    block = output["adjusted"]
    labels = arm_labels()
    table = Table(
        "adjusted",
        _("Adjusted comparison of the arms (inverse probability of treatment weighting)"),
        [
            _("Endpoint"),
            _("Cox HR, CAR-T vs blinatumomab, unadjusted (95% CI), p"),
            _("Cox HR, weighted (robust 95% CI), p"),
            *(
                _("Weighted %(month)s-month survival: %(arm)s") % {"month": month, "arm": label}
                for month in (12, 24)
                for label in labels.values()
            ),
        ],
    )
    names = {"pfs": _("Progression-free survival"), "os": _("Overall survival")}
    for endpoint, name in names.items():
        adjusted = block[endpoint]
        table.rows.append(
            [
                name,
                hazard(crude[endpoint]["cox"]),
                hazard(adjusted["cox_iptw"]),
                *(
                    percent(adjusted[f"km_{month}m"].get(arm))
                    for month in (12, 24)
                    for arm in labels
                ),
            ]
        )
    propensity = block["propensity"]
    if propensity.get("weights_min") is None:
        table.note = not_estimable(propensity.get("reason"))
    else:
        table.note = _(
            "Stabilised weights from a logistic propensity model of CAR-T on age, sex, Ph "
            "status, disease burden, relapse group and previous HSCT (%(n)s patients; weights "
            "%(low)s to %(high)s; effective sample size %(ess)s)."
        ) % {
            "n": propensity["n"],
            "low": number(propensity["weights_min"]),
            "high": number(propensity["weights_max"]),
            "ess": ", ".join(
                f"{label} {number(propensity['ess'].get(arm), 1)}" for arm, label in labels.items()
            ),
        }
    return table


def covariate_names() -> dict[str, str]:
    return {
        "age": _("Age at day 0"),
        "sex": _("Sex"),
        "ph_status": _("Ph status"),
        "disease_burden": _("Disease burden"),
        "relapse_group": _("Relapse group"),
        "prior_hsct": _("Previous allogeneic HSCT"),
    }


def level_names() -> dict[str, str]:
    return {
        **{k: str(v) for k, v in SEX},
        **{k: str(v) for k, v in PH_STATUS},
        **{k: str(v) for k, v in DISEASE_BURDEN},
        "not_relapsed": _("Not relapsed"),
        "first_relapse": _("First relapse"),
        "second_or_later_relapse": _("Second or later relapse"),
        "yes": _("yes"),
        "no": _("no"),
        "missing": _("missing"),
    }


def balance_table(output: Mapping[str, Any]) -> Table:
    rows = output["adjusted"]["propensity"].get("balance") or []
    covariates, levels = covariate_names(), level_names()
    table = Table(
        "balance",
        _("Balance of the arms before and after weighting"),
        [_("Covariate"), _("Level"), _("SMD before weighting"), _("SMD after weighting")],
    )
    for row in rows:
        table.rows.append(
            [
                covariates.get(row["covariate"], row["covariate"]),
                levels.get(row["level"], row["level"] or ""),
                number(row["smd_before"]),
                number(row["smd_after"]),
            ]
        )
    table.note = _(
        "Standardised mean difference, CAR-T minus blinatumomab, over the pooled unweighted "
        "standard deviation; |SMD| < 0.1 is commonly read as balanced."
    )
    return table


def rmst_table(output: Mapping[str, Any]) -> Table:
    labels = arm_labels()
    table = Table(
        "rmst",
        _("Restricted mean survival time, months"),
        [
            _("Endpoint"),
            _("Up to"),
            *(_("%(arm)s: RMST (SE)") % {"arm": label} for label in labels.values()),
            _("Difference, CAR-T − blinatumomab (95% CI)"),
            _("p"),
        ],
    )
    names = {"pfs": _("Progression-free survival"), "os": _("Overall survival")}
    for endpoint, name in names.items():
        for tau, block in output["rmst"][endpoint].items():
            table.rows.append(
                [
                    name,
                    _("%(months)s months") % {"months": tau},
                    *(
                        f"{number(block[arm]['rmst'])} ({number(block[arm]['se'])})"
                        for arm in labels
                    ),
                    f"{number(block['difference'])} ({_interval(block['ci95'], number)})",
                    p_value(block["p"]),
                ]
            )
    table.note = _(
        "The mean time alive (and, for PFS, without progression) within the first 12 or 24 "
        "months: the area under the Kaplan-Meier curve. Unlike the median it exists when fewer "
        "than half the patients had the event."
    )
    return table


def hematotoxicity_table(output: Mapping[str, Any]) -> Table:
    """SAP 15: early and late ICAHT per arm, derived from the lab series."""
    table = Table(
        "hematotoxicity",
        _("Hematotoxicity (ICAHT, derived from the ANC series)"),
        [
            _("ICAHT"),
            _("Arm"),
            *(_("Grade %(grade)s") % {"grade": grade} for grade in range(5)),
            _("Not gradable"),
            _("Severe (grade ≥ 3), n/N (95% CI)"),
            _("Fisher p"),
        ],
    )
    names = {"icaht_early": _("Early (days 0-30)"), "icaht_late": _("Late (after day 30)")}
    for phase, name in names.items():
        block = output["hematotoxicity"][phase]
        for index, (arm, label) in enumerate(arm_labels().items()):
            counts = block["grade_distribution"][arm]
            table.rows.append(
                [
                    name,
                    label,
                    *(str(counts[str(grade)]) for grade in range(5)),
                    str(counts["not_gradable"]),
                    rate(block["severe"][arm]),
                    p_value(block["severe"]["p_fisher"]) if index == 0 else "",
                ]
            )
    table.note = _(
        "EHA/EBMT consensus (Rejeski et al., Blood 2023): early ICAHT from the days with ANC "
        "at or below 500/µL and 100/µL in days 0-30, late ICAHT from the lowest ANC after day 30 "
        "confirmed by a second value. Derived by the registry from the laboratory values, never "
        "typed; a series too sparse to grade is counted as not gradable and left out of the "
        "severe rate."
    )
    return table


def late_effects_table(output: Mapping[str, Any]) -> Table:
    """Issue #17: infections by day 100 (death competing), IVIG use and CAR persistence."""
    labels = arm_labels()
    table = Table(
        "late-effects",
        _("Infections, immunoglobulin replacement and CAR persistence"),
        [_("Per arm"), *labels.values(), _("Fisher p")],
    )
    infections = output["competing_risks"].get("infection_by_day100")
    if infections:
        table.rows.append(
            [
                _("First infection by day 100, cumulative incidence (95% CI)"),
                *(
                    f"{percent(infections[arm]['at_day100'])} "
                    f"({_interval(infections[arm]['at_day100_ci95'])})"
                    for arm in labels
                ),
                DASH,
            ]
        )
    block = output["hematotoxicity"]
    for key, name in (
        ("ivig", _("Immunoglobulin replacement (IVIG) given")),
        ("car_persistence", _("CAR T cells detected (patients assessed)")),
    ):
        if key in block:
            table.rows.append(
                [name, *(rate(block[key][arm]) for arm in labels), p_value(block[key]["p_fisher"])]
            )
    table.note = _(
        "Infections: the first infection on or after day 0, death before it a competing event, "
        "follow-up cut at day 100 (Aalen-Johansen, as for relapse and non-relapse mortality)."
    )
    return table


def comparison_tables(output: Mapping[str, Any]) -> list[Table]:
    """The tables of SAP sections 12-15, or none for a snapshot computed before them."""
    if "competing_risks" not in output:
        return []
    tables = [
        competing_risks_table(output),
        adjusted_table(output, output["survival"]),
        balance_table(output),
        rmst_table(output),
    ]
    if "hematotoxicity" in output:
        tables.append(hematotoxicity_table(output))
        tables.append(late_effects_table(output))
    return tables
