"""Registry rows -> tidy DataFrames for the SAP (the only analytics module that reads the ORM).

One row per patient of the analysis set (SAP.md section 1): the patient's first index treatment
by day 0. Nine queries, whatever the number of patients: one `.values()` query per table, the
rows joined in Python.

Which records count where:
- Toxicity and response belong to the treatment: its CRS and ICANS episodes, and its response
  assessments between day 0 and day 0 + 90 (the response window).
- Time to event belongs to the patient, counted from the analysis-set day 0: any relapse or
  `nr` assessment on or after day 0 (under any of the patient's treatments: the disease is the
  patient's), the death, the last follow-up contact, the first transplant on or after day 0.
- PFS (SAP.md section 6): event at the earliest relapse, `nr` assessment or death; otherwise
  censored at the last contact or response assessment. OS: event at death; otherwise censored
  at the last contact. With no contact at all, follow-up ends on day 0.
- Grade used: the derived ASTCT 2019 grade where it exists, else the recorded grade; a
  treatment's grade is its worst episode's; a status of `no` is grade 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from django.db.models import Max, Model, QuerySet

from registry.domain.vocabulary import (
    MrdStatus,
    RelapseStatus,
    Response,
    TransplantType,
    YesNoUnknown,
)
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.selectors import SITE_PATH

RESPONSE_WINDOW_DAYS = 90  # SAP.md section 1: response-evaluable between day 0 and day 90

# SAP.md section 5: the relapse groups of the subgroup analysis.
RELAPSE_GROUP = {
    RelapseStatus.MRD_PERSISTENT_CR1: "not_relapsed",
    RelapseStatus.PRIMARY_REFRACTORY: "not_relapsed",
    RelapseStatus.FIRST_RELAPSE: "first_relapse",
    RelapseStatus.SECOND_OR_LATER_RELAPSE: "second_or_later_relapse",
}
RELAPSE_GROUPS = ("not_relapsed", "first_relapse", "second_or_later_relapse")

# Best response first; `not_evaluable` is never a best response.
RESPONSE_RANK = {Response.CR: 0, Response.CRI: 1, Response.PR: 2, Response.NR: 3}
COMPLETE_REMISSION = frozenset({Response.CR, Response.CRI})

KNOWN_STATUS = frozenset({YesNoUnknown.YES, YesNoUnknown.NO})

TREATMENT_COLUMNS = [
    "treatment_id",
    "patient_id",
    "site_code",
    "study_id",
    "arm",
    "day0",
    "age",
    "sex",
    "ph_status",
    "disease_burden",
    "bm_blast_pct",
    "extramedullary",
    "relapse_status",
    "relapse_group",
    "prior_hsct",
    "crs_status",
    "crs_grade",
    "crs_grade_source",
    "icans_status",
    "icans_grade",
    "icans_grade_source",
    "response_evaluable",
    "best_response",
    "cr",
    "mrd_negative_cr",
    "died",
    "last_contact",
    "pfs_days",
    "pfs_event",
    "os_days",
    "os_event",
    "any_hsct_day",
    "any_hsct_type",
    "ucbt_day",
]
QUERY_COLUMNS = ["patient_id", "site_code", "study_id", "arm", "kind"]
# Database keys differ between copies of the same data; the fingerprint leaves them out.
NOT_FINGERPRINTED = ("treatment_id", "patient_id")


@dataclass(frozen=True)
class AnalysisFrames:
    """The analysis set (one row per patient) and its open data-quality queries."""

    treatments: pd.DataFrame
    open_queries: pd.DataFrame
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self)


# --- reading -----------------------------------------------------------------------------------


def analysis_frames(*, site_ids: Collection[int] | None = None) -> AnalysisFrames:
    """The analysis set of the whole registry (site_ids None) or of these sites."""
    treatments = list(
        _scoped(Treatment, site_ids).values(
            "pk",
            "patient_id",
            "patient__site__code",
            "patient__study_id",
            "patient__sex",
            "patient__year_of_birth",
            "patient__ph_status",
            "arm",
            "day0",
            "disease_burden",
            "bm_blast_pct",
            "extramedullary",
            "relapse_status",
            "prior_hsct",
            "crs_status",
            "icans_status",
        )
    )
    deaths = dict(_scoped(Death, site_ids).values_list("patient_id", "date"))
    crs = _by_key(_scoped(CrsEpisode, site_ids).values("treatment_id", *_GRADES), "treatment_id")
    icans = _by_key(
        _scoped(IcansEpisode, site_ids).values("treatment_id", *_GRADES), "treatment_id"
    )
    responses = list(
        _scoped(ResponseAssessment, site_ids).values(
            "treatment_id", "treatment__patient_id", "date", "response", "mrd_status"
        )
    )
    transplants = _by_key(
        _scoped(Transplant, site_ids).values("treatment__patient_id", "date", "type"),
        "treatment__patient_id",
    )
    relapses = _by_key(
        _scoped(Relapse, site_ids).values("treatment__patient_id", "date"),
        "treatment__patient_id",
    )
    last_contacts = dict(
        _scoped(FollowUpContact, site_ids)
        .values("treatment__patient_id")
        .annotate(last=Max("date"))
        .values_list("treatment__patient_id", "last")
    )
    queries = list(
        _scoped(DataQualityQuery, site_ids).filter(is_open=True).values("patient_id", "kind")
    )

    first = first_treatments(treatments)
    records = PatientRecords(
        deaths=deaths,
        crs=crs,
        icans=icans,
        responses_by_treatment=_by_key(responses, "treatment_id"),
        responses_by_patient=_by_key(responses, "treatment__patient_id"),
        transplants=transplants,
        relapses=relapses,
        last_contacts=last_contacts,
    )
    rows = [analysis_row(treatment, records) for treatment in first]
    frame = pd.DataFrame(rows, columns=TREATMENT_COLUMNS)
    return AnalysisFrames(
        treatments=frame,
        open_queries=_query_frame(queries, frame),
        row_counts={
            "analysis_set": len(frame),
            "treatments": len(treatments),
            "deaths": len(deaths),
            "crs_episodes": sum(map(len, crs.values())),
            "icans_episodes": sum(map(len, icans.values())),
            "response_assessments": len(responses),
            "transplants": sum(map(len, transplants.values())),
            "relapses": sum(map(len, relapses.values())),
            "patients_with_contacts": len(last_contacts),
            "open_queries": len(queries),
        },
    )


_GRADES = ("derived_grade", "recorded_grade")


def _scoped(model: type[Model], site_ids: Collection[int] | None) -> QuerySet:
    queryset = model.objects.order_by()
    if site_ids is None:
        return queryset
    return queryset.filter(**{f"{SITE_PATH[model]}__in": list(site_ids)})


def _by_key(rows: Iterable[dict[str, Any]], key: str) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return grouped


def first_treatments(treatments: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The analysis set: each patient's first index treatment by day 0 (then by entry order)."""
    first: dict[int, dict[str, Any]] = {}
    for row in treatments:
        current = first.get(row["patient_id"])
        if current is None or (row["day0"], row["pk"]) < (current["day0"], current["pk"]):
            first[row["patient_id"]] = row
    return sorted(first.values(), key=lambda row: (row["patient__site__code"], row["day0"]))


def _query_frame(queries: list[dict[str, Any]], treatments: pd.DataFrame) -> pd.DataFrame:
    """Open queries of the analysis-set patients, with the patient's arm."""
    frame = pd.DataFrame(queries, columns=["patient_id", "kind"])
    patients = treatments[["patient_id", "site_code", "study_id", "arm"]]
    return frame.merge(patients, on="patient_id", how="inner")[QUERY_COLUMNS]


# --- one patient -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientRecords:
    """Everything read, grouped by treatment or patient for `analysis_row`."""

    deaths: dict[int, date]
    crs: dict[int, list[dict[str, Any]]]
    icans: dict[int, list[dict[str, Any]]]
    responses_by_treatment: dict[int, list[dict[str, Any]]]
    responses_by_patient: dict[int, list[dict[str, Any]]]
    transplants: dict[int, list[dict[str, Any]]]
    relapses: dict[int, list[dict[str, Any]]]
    last_contacts: dict[int, date]


def analysis_row(treatment: dict[str, Any], records: PatientRecords) -> dict[str, Any]:
    treatment_id, patient_id, day0 = treatment["pk"], treatment["patient_id"], treatment["day0"]
    death = records.deaths.get(patient_id)
    last_contact = records.last_contacts.get(patient_id)
    patient_responses = [
        r for r in records.responses_by_patient.get(patient_id, []) if r["date"] >= day0
    ]
    crs_grade, crs_source = toxicity_grade(
        treatment["crs_status"], records.crs.get(treatment_id, [])
    )
    icans_grade, icans_source = toxicity_grade(
        treatment["icans_status"], records.icans.get(treatment_id, [])
    )
    window = response_window(records.responses_by_treatment.get(treatment_id, []), day0)
    best = best_response(window)
    pfs_days, pfs_event = progression_free_survival(
        day0=day0,
        relapses=[r["date"] for r in records.relapses.get(patient_id, []) if r["date"] >= day0],
        non_responses=[r["date"] for r in patient_responses if r["response"] == Response.NR],
        assessments=[r["date"] for r in patient_responses],
        death=death,
        last_contact=last_contact,
    )
    os_days, os_event = overall_survival(day0=day0, death=death, last_contact=last_contact)
    transplants = sorted(
        (t for t in records.transplants.get(patient_id, []) if t["date"] >= day0),
        key=lambda t: t["date"],
    )
    ucbt = [t for t in transplants if t["type"] == TransplantType.UCBT]
    blasts = treatment["bm_blast_pct"]
    return {
        "treatment_id": treatment_id,
        "patient_id": patient_id,
        "site_code": treatment["patient__site__code"],
        "study_id": treatment["patient__study_id"],
        "arm": treatment["arm"],
        "day0": day0,
        "age": day0.year - treatment["patient__year_of_birth"],
        "sex": treatment["patient__sex"],
        "ph_status": treatment["patient__ph_status"],
        "disease_burden": treatment["disease_burden"] or None,
        "bm_blast_pct": None if blasts is None else float(blasts),
        "extramedullary": treatment["extramedullary"],
        "relapse_status": treatment["relapse_status"] or None,
        "relapse_group": RELAPSE_GROUP.get(treatment["relapse_status"]),
        "prior_hsct": treatment["prior_hsct"],
        "crs_status": treatment["crs_status"],
        "crs_grade": crs_grade,
        "crs_grade_source": crs_source,
        "icans_status": treatment["icans_status"],
        "icans_grade": icans_grade,
        "icans_grade_source": icans_source,
        "response_evaluable": bool(window),
        "best_response": best,
        "cr": best in COMPLETE_REMISSION,
        "mrd_negative_cr": any(is_mrd_negative_cr(r) for r in window),
        "died": death is not None,
        "last_contact": last_contact,
        "pfs_days": pfs_days,
        "pfs_event": pfs_event,
        "os_days": os_days,
        "os_event": os_event,
        "any_hsct_day": (transplants[0]["date"] - day0).days if transplants else None,
        "any_hsct_type": transplants[0]["type"] if transplants else None,
        "ucbt_day": (ucbt[0]["date"] - day0).days if ucbt else None,
    }


def toxicity_grade(status: str, episodes: list[dict[str, Any]]) -> tuple[int | None, str | None]:
    """The treatment's CRS (or ICANS) grade and where it came from ("derived" / "recorded").

    Status `no` is grade 0; `unknown` (not evaluable) and `yes` without any graded episode have
    no grade.
    """
    if status == YesNoUnknown.NO:
        return 0, None
    if status != YesNoUnknown.YES:
        return None, None
    graded = [
        (episode["derived_grade"], "derived")
        if episode["derived_grade"] is not None
        else (episode["recorded_grade"], "recorded")
        for episode in episodes
    ]
    graded = [(grade, source) for grade, source in graded if grade is not None]
    if not graded:
        return None, None
    return max(graded, key=lambda pair: pair[0])


def response_window(assessments: list[dict[str, Any]], day0: date) -> list[dict[str, Any]]:
    """Evaluable assessments between day 0 and day 0 + 90 (SAP.md section 1)."""
    last = day0 + timedelta(days=RESPONSE_WINDOW_DAYS)
    return [
        a
        for a in assessments
        if day0 <= a["date"] <= last and a["response"] != Response.NOT_EVALUABLE
    ]


def best_response(window: list[dict[str, Any]]) -> str | None:
    ranked = [a["response"] for a in window if a["response"] in RESPONSE_RANK]
    return min(ranked, key=RESPONSE_RANK.__getitem__) if ranked else None


def is_mrd_negative_cr(assessment: dict[str, Any]) -> bool:
    """DOMAIN.md: response cr or cri with MRD negative at that same assessment."""
    return (
        assessment["response"] in COMPLETE_REMISSION
        and assessment["mrd_status"] == MrdStatus.NEGATIVE
    )


def progression_free_survival(
    *,
    day0: date,
    relapses: list[date],
    non_responses: list[date],
    assessments: list[date],
    death: date | None,
    last_contact: date | None,
) -> tuple[int, int]:
    """(days, event) per SAP.md section 6."""
    events = [*relapses, *non_responses, *([death] if death else [])]
    if events:
        return (min(events) - day0).days, 1
    seen = [d for d in (last_contact, *assessments) if d is not None and d >= day0]
    return (max(seen, default=day0) - day0).days, 0


def overall_survival(
    *, day0: date, death: date | None, last_contact: date | None
) -> tuple[int, int]:
    if death is not None:
        return (death - day0).days, 1
    if last_contact is None or last_contact < day0:
        return 0, 0
    return (last_contact - day0).days, 0


# --- fingerprint -------------------------------------------------------------------------------


def fingerprint(frames: AnalysisFrames) -> str:
    """SHA-256 of a canonical serialisation of the analysis rows and open queries.

    Rows are identified by site and study ID (not database keys) and sorted, so the same data
    gives the same fingerprint in any database and any row order.
    """
    payload = {
        "treatments": canonical_rows(frames.treatments.drop(columns=list(NOT_FINGERPRINTED))),
        "open_queries": canonical_rows(frames.open_queries.drop(columns=["patient_id"])),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def canonical_rows(frame: pd.DataFrame) -> list[list[Any]]:
    rows = [[canonical_value(value) for value in row] for row in frame.itertuples(index=False)]
    return [list(frame.columns), *sorted(rows, key=lambda row: json.dumps(row))]


def canonical_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return canonical_value(value.item())
    if isinstance(value, float):
        return repr(value)
    return value
