"""Registry rows -> tidy DataFrames for the SAP (the only analytics module that reads the ORM).

One row per patient of the analysis set (SAP.md section 1): the patient's first index treatment
by day 0. Nine queries, whatever the number of patients: one `.values_list()` query per table;
the rows are matched to the analysis set and summed up per row with pandas and numpy, a whole
column at a time (no Python work per patient: at 100,000 patients that was most of the time).

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
  treatment's grade is its worst episode's (the first entered of equally bad ones); a status
  of `no` is grade 0.
- Late events (DOMAIN.md "Hematotoxicity and late effects"), of the patient and dated on or
  after day 0 like the relapses: the day of the first infection, whether an IVIG course was
  given, and CAR persistence (detected at any assessment; None if never assessed).
- ICAHT early and late grades are read as registry.services stored them on the treatment
  (derived from its lab series; None is "not gradable"). Ties are broken by entry order (the key), never by the order a query
  returns rows in: PostgreSQL returns an updated row from wherever its new version landed.

The columns keep the types pandas gives a column of Python values: a number column with some
values missing is float with NaN, with all of them missing it is object with None (see
`_optional_numbers`); text and dates are objects with None for missing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
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
    CarPersistence,
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Infection,
    IvigCourse,
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
    "icaht_early_grade",
    "icaht_late_grade",
    "infection_day",
    "ivig",
    "car_persistence",
    "response_evaluable",
    "best_response",
    "cr",
    "mrd_negative_cr",
    "died",
    "last_contact",
    "last_seen",
    "pfs_days",
    "pfs_event",
    "pfs_cause",
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

# Column name -> lookup, one query per table. The clinical records under a treatment read only
# its key, the patient comes from the treatments read: no join (but the site scope's filter).
TREATMENT_FIELDS = {
    "treatment_id": "pk",
    "patient_id": "patient_id",
    "site_code": "patient__site__code",
    "study_id": "patient__study_id",
    "sex": "patient__sex",
    "year_of_birth": "patient__year_of_birth",
    "ph_status": "patient__ph_status",
    "arm": "arm",
    "day0": "day0",
    "disease_burden": "disease_burden",
    "bm_blast_pct": "bm_blast_pct",
    "extramedullary": "extramedullary",
    "icaht_early_grade": "icaht_early_grade",
    "icaht_late_grade": "icaht_late_grade",
    "relapse_status": "relapse_status",
    "prior_hsct": "prior_hsct",
    "crs_status": "crs_status",
    "icans_status": "icans_status",
}
EPISODE_FIELDS = ("id", "treatment_id", "derived_grade", "recorded_grade")
RESPONSE_FIELDS = ("treatment_id", "date", "response", "mrd_status")
TRANSPLANT_FIELDS = ("id", "treatment_id", "date", "type")


def analysis_frames(*, site_ids: Collection[int] | None = None) -> AnalysisFrames:
    """The analysis set of the whole registry (site_ids None) or of these sites."""
    treatments = _read(_scoped(Treatment, site_ids), TREATMENT_FIELDS)
    deaths = _read(_scoped(Death, site_ids), ("patient_id", "date"))
    crs = _read(_scoped(CrsEpisode, site_ids), EPISODE_FIELDS)
    icans = _read(_scoped(IcansEpisode, site_ids), EPISODE_FIELDS)
    responses = _read(_scoped(ResponseAssessment, site_ids), RESPONSE_FIELDS)
    transplants = _read(_scoped(Transplant, site_ids), TRANSPLANT_FIELDS)
    relapses = _read(_scoped(Relapse, site_ids), ("treatment_id", "date"))
    infections = _read(
        _scoped(Infection, site_ids), {"treatment_id": "treatment_id", "date": "onset"}
    )
    ivig = _read(_scoped(IvigCourse, site_ids), {"treatment_id": "treatment_id", "date": "start"})
    persistence = _read(_scoped(CarPersistence, site_ids), ("treatment_id", "date", "detected"))
    last_contacts = _read(
        # Ordered by treatment, PostgreSQL takes the latest of each from the (treatment, date)
        # index rather than hashing every contact (which spills to disk at 100,000 patients).
        _scoped(FollowUpContact, site_ids)
        .values("treatment_id")
        .annotate(last=Max("date"))
        .order_by("treatment_id"),
        {"treatment_id": "treatment_id", "date": "last"},
    )
    queries = _read(
        _scoped(DataQualityQuery, site_ids).filter(is_open=True), ("patient_id", "kind")
    )

    analysis_set = AnalysisSet(treatments)
    frame = analysis_set.frame(
        deaths=deaths,
        crs=crs,
        icans=icans,
        responses=responses,
        transplants=transplants,
        relapses=relapses,
        last_contacts=last_contacts,
        infections=infections,
        ivig=ivig,
        persistence=persistence,
    )
    return AnalysisFrames(
        treatments=frame,
        open_queries=_query_frame(queries, frame),
        row_counts={
            "analysis_set": len(frame),
            "treatments": len(treatments),
            "deaths": deaths["patient_id"].nunique(),
            "crs_episodes": len(crs),
            "icans_episodes": len(icans),
            "response_assessments": len(responses),
            "transplants": len(transplants),
            "relapses": len(relapses),
            "infections": len(infections),
            "ivig_courses": len(ivig),
            "persistence_assessments": len(persistence),
            "patients_with_contacts": analysis_set.patients_of(last_contacts),
            "open_queries": len(queries),
        },
    )


def _scoped(model: type[Model], site_ids: Collection[int] | None) -> QuerySet:
    queryset = model.objects.order_by()
    if site_ids is None:
        return queryset
    return queryset.filter(**{f"{SITE_PATH[model]}__in": list(site_ids)})


def _read(queryset: QuerySet, fields: dict[str, str] | tuple[str, ...]) -> pd.DataFrame:
    """One query: its rows, in the order read, as columns named by `fields` (name -> lookup)."""
    lookups = fields if isinstance(fields, dict) else {name: name for name in fields}
    rows = list(queryset.values_list(*lookups.values()))
    return pd.DataFrame(rows, columns=list(lookups))


def first_treatments(treatments: pd.DataFrame) -> pd.DataFrame:
    """The analysis set: each patient's first index treatment by day 0 (then by entry order).

    Sorted by site, day 0, then the patient's key (entry order), so the same data gives the same
    rows in the same order whatever order the query returned them in. Adds `day`, day 0 as a
    day number.
    """
    day = _days(treatments["day0"])
    patient = treatments["patient_id"].to_numpy()
    earliest = np.lexsort((treatments["treatment_id"].to_numpy(), day))
    first = earliest[np.unique(patient[earliest], return_index=True)[1]]
    site = pd.factorize(treatments["site_code"], sort=True)[0]
    order = first[np.lexsort((patient[first], day[first], site[first]))]
    # One new frame of the taken values (take, assign and reset_index each copied the frame).
    columns = {name: treatments[name].to_numpy()[order] for name in treatments.columns}
    return pd.DataFrame({**columns, "day": day[order]})


def _query_frame(queries: pd.DataFrame, treatments: pd.DataFrame) -> pd.DataFrame:
    """Open queries of the analysis-set patients, with the patient's arm."""
    patients = treatments[["patient_id", "site_code", "study_id", "arm"]]
    return queries.merge(patients, on="patient_id", how="inner")[QUERY_COLUMNS]


# --- the analysis set, a column at a time ------------------------------------------------------

NO_ROW = -1  # a record of no analysis-set treatment or patient
Columns = dict[str, np.ndarray]  # records as arrays of the same length, by column name
NO_DAY = 0  # before any date: date.toordinal() >= 1
NO_RECORD_DAY = date.max.toordinal() + 1  # after any date: the minimum of no record
NEVER = np.iinfo(np.int64).max  # after any date

# Response ranks as plain strings (the column values), best first.
RANKED_RESPONSES = [response.value for response in sorted(RESPONSE_RANK, key=RESPONSE_RANK.get)]
UNRANKED = len(RANKED_RESPONSES)  # not a best response; also "no ranked response at all"
COMPLETE_REMISSION_RANKS = [RESPONSE_RANK[response] for response in COMPLETE_REMISSION]


class AnalysisSet:
    """The analysis-set rows of these treatments, and the columns their records give them.

    A record is matched to its row by position (`row`): the row of its treatment for what
    belongs to the treatment (CRS, ICANS, the response window), of its patient otherwise;
    NO_ROW for a patient's other treatments (and for a record written while the frames were
    being read, whose treatment was not read).
    """

    def __init__(self, treatments: pd.DataFrame):
        self.first = first_treatments(treatments)
        self.size = len(self.first)
        self.day0 = self.first["day"].to_numpy()
        self._patient_rows = pd.Index(self.first["patient_id"])
        self._treatment_rows = pd.Index(self.first["treatment_id"])
        self._treatments = pd.Index(treatments["treatment_id"])
        self._patient_of_treatment = treatments["patient_id"].to_numpy()
        # Every day 0 of each patient: a day 0 is a day the patient was seen (`last_seen`).
        self._day0s = pd.DataFrame(
            {"patient_id": treatments["patient_id"], "date": treatments["day0"]}
        )

    def treatment_rows(self, records: pd.DataFrame) -> np.ndarray:
        """Rows of the records' treatments (NO_ROW for a patient's other treatments)."""
        return self._treatment_rows.get_indexer(records["treatment_id"])

    def patient_rows(self, records: pd.DataFrame) -> np.ndarray:
        """Rows of the records' patients, by `patient_id` or else by the treatment's patient."""
        if "patient_id" in records:
            return self._patient_rows.get_indexer(records["patient_id"])
        found = self._treatments.get_indexer(records["treatment_id"])
        read = found != NO_ROW
        rows = np.full(len(found), NO_ROW, dtype=np.intp)
        rows[read] = self._patient_rows.get_indexer(self._patient_of_treatment[found[read]])
        return rows

    def patients_of(self, records: pd.DataFrame) -> int:
        """How many patients these records (under a treatment each) belong to."""
        rows = self.patient_rows(records)
        return len(np.unique(rows[rows != NO_ROW]))

    def frame(
        self,
        *,
        deaths: pd.DataFrame,
        crs: pd.DataFrame,
        icans: pd.DataFrame,
        responses: pd.DataFrame,
        transplants: pd.DataFrame,
        relapses: pd.DataFrame,
        last_contacts: pd.DataFrame,
        infections: pd.DataFrame,
        ivig: pd.DataFrame,
        persistence: pd.DataFrame,
    ) -> pd.DataFrame:
        if not self.size:
            return pd.DataFrame([], columns=TREATMENT_COLUMNS)
        first, day0 = self.first, self.day0
        death = self._each_row(np.maximum, deaths, NO_DAY)
        last_contact = self._each_row(np.maximum, last_contacts, NO_DAY)
        # registry.domain.followup.last_seen_of: the latest contact or day 0 of the patient
        last_seen = np.maximum(last_contact, self._each_row(np.maximum, self._day0s, NO_DAY))
        crs_grade, crs_source = self.toxicity_grade(first["crs_status"], crs)
        icans_grade, icans_source = self.toxicity_grade(first["icans_status"], icans)
        evaluable, best_rank, mrd_negative_cr = self.response(responses)
        pfs_days, pfs_event, pfs_cause = self.progression_free_survival(
            responses, relapses, death=death, last_contact=last_contact
        )
        died = death != NO_DAY
        transplant_day, transplant_type = self.first_transplant(transplants)
        ucbt_day, _ = self.first_transplant(transplants[transplants["type"] == TransplantType.UCBT])
        columns = {
            "treatment_id": first["treatment_id"].to_numpy(),
            "patient_id": first["patient_id"].to_numpy(),
            "site_code": _objects(first["site_code"]),
            "study_id": _objects(first["study_id"]),
            "arm": _objects(first["arm"]),
            "day0": _objects(first["day0"]),
            "age": np.array([day.year for day in first["day0"]], dtype=np.int64)
            - first["year_of_birth"].to_numpy(dtype=np.int64),
            "sex": _objects(first["sex"]),
            "ph_status": _objects(first["ph_status"]),
            "disease_burden": _objects([value or None for value in first["disease_burden"]]),
            "bm_blast_pct": _optional_numbers(
                np.array([math.nan if b is None else float(b) for b in first["bm_blast_pct"]]),
                present=first["bm_blast_pct"].notna().to_numpy(),
            ),
            "extramedullary": _optional_booleans(first["extramedullary"]),
            "relapse_status": _objects([value or None for value in first["relapse_status"]]),
            "relapse_group": _objects([RELAPSE_GROUP.get(s) for s in first["relapse_status"]]),
            "prior_hsct": _optional_booleans(first["prior_hsct"]),
            "crs_status": _objects(first["crs_status"]),
            "crs_grade": crs_grade,
            "crs_grade_source": crs_source,
            "icans_status": _objects(first["icans_status"]),
            "icans_grade": icans_grade,
            "icans_grade_source": icans_source,
            # Derived and stored on the treatment by registry.services (None: not gradable).
            "icaht_early_grade": _stored_grade(first["icaht_early_grade"]),
            "icaht_late_grade": _stored_grade(first["icaht_late_grade"]),
            "infection_day": self.first_day(infections),
            "ivig": self._first_record_day(ivig) != NO_RECORD_DAY,
            "car_persistence": self.persistence(persistence),
            "response_evaluable": evaluable,
            "best_response": np.array([*RANKED_RESPONSES, None], dtype=object)[best_rank],
            "cr": np.isin(best_rank, COMPLETE_REMISSION_RANKS),
            "mrd_negative_cr": mrd_negative_cr,
            "died": died,
            "last_contact": _dates(last_contact),
            "last_seen": _dates(last_seen),
            "pfs_days": pfs_days,
            "pfs_event": pfs_event,
            "pfs_cause": pfs_cause,
            # OS: event at death; otherwise censored at the last contact, or day 0 without one.
            "os_days": np.where(died, death - day0, np.maximum(last_contact - day0, 0)),
            "os_event": died.astype(np.int64),
            "any_hsct_day": transplant_day,
            "any_hsct_type": transplant_type,
            "ucbt_day": ucbt_day,
        }
        return pd.DataFrame(columns, columns=TREATMENT_COLUMNS)

    def toxicity_grade(
        self, status: pd.Series, episodes: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each treatment's CRS (or ICANS) grade and where it came from ("derived" / "recorded").

        Status `no` is grade 0; `unknown` (not evaluable) and `yes` without any graded episode
        have no grade.
        """
        derived = episodes["derived_grade"].notna().to_numpy()
        row = self.treatment_rows(episodes)
        grade = np.where(
            derived,
            pd.to_numeric(episodes["derived_grade"]),
            pd.to_numeric(episodes["recorded_grade"]),
        ).astype(float)
        graded = (row != NO_ROW) & ~np.isnan(grade)
        row, grade, derived = row[graded], grade[graded], derived[graded]
        worst = _first_per_row(row, -grade, episodes["id"].to_numpy()[graded])
        rows = row[worst]
        grade_of_row = np.zeros(self.size, dtype=np.int64)
        grade_of_row[rows] = grade[worst]
        source = np.full(self.size, None, dtype=object)
        source[rows] = np.where(derived[worst], "derived", "recorded")
        status = status.to_numpy()
        graded_yes = np.zeros(self.size, dtype=bool)
        graded_yes[rows] = status[rows] == YesNoUnknown.YES
        return (
            _optional_numbers(grade_of_row, present=graded_yes | (status == YesNoUnknown.NO)),
            np.where(graded_yes, source, None),
        )

    def response(self, responses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: response-evaluable, the rank of the best response (UNRANKED if none) and
        MRD-negative CR (DOMAIN.md: cr or cri with MRD negative at that same assessment)."""
        rows = self.treatment_rows(responses)
        response = responses["response"].to_numpy()
        after_day0 = _days(responses["date"]) - self.day0[rows]
        in_window = (
            (rows != NO_ROW)
            & (after_day0 >= 0)
            & (after_day0 <= RESPONSE_WINDOW_DAYS)
            & (response != Response.NOT_EVALUABLE)
        )
        rows = rows[in_window]
        rank = (
            pd.Series(response[in_window], dtype=object)
            .map(dict(zip(RANKED_RESPONSES, range(UNRANKED), strict=True)))
            .fillna(UNRANKED)
            .to_numpy(dtype=np.int64)
        )
        mrd_negative = responses["mrd_status"].to_numpy()[in_window] == MrdStatus.NEGATIVE
        evaluable = np.zeros(self.size, dtype=bool)
        evaluable[rows] = True
        best_rank = np.full(self.size, UNRANKED, dtype=np.int64)
        np.minimum.at(best_rank, rows, rank)
        mrd_negative_cr = np.zeros(self.size, dtype=bool)
        mrd_negative_cr[rows[np.isin(rank, COMPLETE_REMISSION_RANKS) & mrd_negative]] = True
        return evaluable, best_rank, mrd_negative_cr

    def progression_free_survival(
        self,
        responses: pd.DataFrame,
        relapses: pd.DataFrame,
        *,
        death: np.ndarray,
        last_contact: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(days, event, cause) per SAP.md sections 6 and 12: the cause of the event is 1, a
        relapse or progression (a relapse, or a non-response dated at its assessment), or 2,
        non-relapse mortality (death with no relapse or progression on or before its day: a
        relapse recorded on the day of death makes it a relapse); 0 when censored."""
        assessments = self._on_or_after_day0(responses)
        non_response = assessments["response"] == Response.NR
        non_responses = {name: values[non_response] for name, values in assessments.items()}
        progression = np.minimum(
            self._each_row(np.minimum, self._on_or_after_day0(relapses), NEVER),
            self._each_row(np.minimum, non_responses, NEVER),
        )
        dying = np.where(death == NO_DAY, NEVER, death)
        first_event = np.minimum(progression, dying)
        event = first_event != NEVER
        cause = np.where(~event, 0, np.where(progression <= dying, 1, 2))
        # Censored at the last contact or assessment on or after day 0; at day 0 without one.
        censored = np.maximum.reduce(
            [self.day0, last_contact, self._each_row(np.maximum, assessments, NO_DAY)]
        )
        days = np.where(event, first_event, censored) - self.day0
        return days, event.astype(np.int64), cause.astype(np.int64)

    def first_transplant(self, transplants: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the day (from day 0) and type of the first transplant on or after day 0."""
        after = self._on_or_after_day0(transplants)
        row, after_day = after["row"], after["day"]
        first = _first_per_row(row, after_day, after["id"])
        rows = row[first]
        day = np.zeros(self.size, dtype=np.int64)
        day[rows] = after_day[first] - self.day0[rows]
        kind = np.full(self.size, None, dtype=object)
        kind[rows] = after["type"][first]
        present = np.zeros(self.size, dtype=bool)
        present[rows] = True
        return _optional_numbers(day, present=present), kind

    def _on_or_after_day0(self, records: pd.DataFrame) -> Columns:
        """The patient records dated on or after their row's day 0, with `row` and `day`, as
        arrays (a frame per step cost more than the steps at 1,000 patients: issue #16)."""
        rows = self.patient_rows(records)
        day = _days(records["date"])
        kept = (rows != NO_ROW) & (day >= self.day0[rows])
        columns = {name: records[name].to_numpy()[kept] for name in records.columns}
        return {**columns, "row": rows[kept], "day": day[kept]}

    def first_day(self, records: pd.DataFrame) -> np.ndarray:
        """Per row, the days from day 0 to the patient's first record dated on or after it;
        missing (see _optional_numbers) where there is none."""
        first = self._first_record_day(records)
        present = first != NO_RECORD_DAY
        return _optional_numbers(np.where(present, first - self.day0, -1), present=present)

    def _first_record_day(self, records: pd.DataFrame) -> np.ndarray:
        """Per row, the day number of the patient's first record on or after day 0, or
        NO_RECORD_DAY."""
        return self._each_row(np.minimum, self._on_or_after_day0(records), NO_RECORD_DAY)

    def persistence(self, assessments: pd.DataFrame) -> np.ndarray:
        """Per row: CAR T cells detected at any of the patient's assessments on or after day 0
        (True), assessed and never detected (False), or never assessed (None)."""
        after = self._on_or_after_day0(assessments)
        rows = after["row"]
        assessed = np.zeros(self.size, dtype=bool)
        assessed[rows] = True
        detected = np.zeros(self.size, dtype=bool)
        detected[rows[after["detected"].astype(bool)]] = True
        return np.array(
            [bool(d) if a else None for a, d in zip(assessed, detected, strict=True)], dtype=object
        )

    def _each_row(self, ufunc: np.ufunc, records: pd.DataFrame | Columns, empty: int) -> np.ndarray:
        """Per row, ufunc (np.minimum, np.maximum) of its patient records' dates (of their
        `row` and `day` if they have them); `empty` if it has none."""
        if "row" in records:
            rows, day = records["row"], records["day"]
        else:
            rows, day = self.patient_rows(records), _days(records["date"])
        kept = rows != NO_ROW
        result = np.full(self.size, empty, dtype=np.int64)
        ufunc.at(result, rows[kept], day[kept])
        return result


def _first_per_row(rows: np.ndarray, by: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The positions of each row's record with the lowest `by`; of equal ones, the first
    entered (lowest id)."""
    order = np.lexsort((ids, by, rows))
    ordered_rows = rows[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = ordered_rows[1:] != ordered_rows[:-1]
    return order[starts]


def _stored_grade(grades: pd.Series) -> np.ndarray:
    """A grade column read from the treatments, typed as the computed grade columns are."""
    present = grades.notna().to_numpy()
    values = np.zeros(len(grades), dtype=np.int64)
    values[present] = grades[present].astype(np.int64).to_numpy()
    return _optional_numbers(values, present=present)


def _days(dates: Iterable[date]) -> np.ndarray:
    """Dates as day numbers (date.toordinal), for arithmetic on whole columns."""
    return np.fromiter(map(date.toordinal, dates), dtype=np.int64)


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers back to dates; NO_DAY is None."""
    return _objects([None if day == NO_DAY else date.fromordinal(day) for day in days.tolist()])


def _objects(values: pd.Series | list[Any]) -> np.ndarray:
    """A column of Python objects (np.fromiter: np.array inspects every value, 10x slower)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object)
    return np.fromiter(values, dtype=object, count=len(values))


def _optional_numbers(values: np.ndarray, *, present: np.ndarray) -> np.ndarray:
    """A number column with values missing where not `present`, typed as pandas types a column
    of Python numbers and None: the numbers if none is missing, float with NaN if some are,
    object (all None) if all are."""
    if present.all():
        return values
    if not present.any():
        return np.full(len(values), None, dtype=object)
    return np.where(present, values, np.nan)


def _optional_booleans(values: pd.Series) -> np.ndarray:
    """A yes/no column that may be unknown (None): bool if it never is, objects if it is."""
    objects = values.to_numpy(dtype=object)
    if any(value is None for value in objects):
        return objects
    return objects.astype(bool)


# --- fingerprint -------------------------------------------------------------------------------


def fingerprint(frames: AnalysisFrames) -> str:
    """SHA-256 of a canonical serialisation of the analysis rows and open queries.

    Rows are identified by site and study ID (not database keys) and sorted, so the same data
    gives the same fingerprint in any database and any row order. The text is that of
    json.dumps({"treatments": rows, "open_queries": rows}, sort_keys=True, separators=(",",
    ":")), where `rows` is a frame's column names, then its rows of canonical values sorted by
    their JSON, written a column at a time (`_canonical_json`; tests/analytics/test_frames.py
    keeps the row-at-a-time reference).
    """
    treatments = _canonical_json(frames.treatments.drop(columns=list(NOT_FINGERPRINTED)))
    open_queries = _canonical_json(frames.open_queries.drop(columns=["patient_id"]))
    text = f'{{"open_queries":{open_queries},"treatments":{treatments}}}'
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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


def _canonical_json(frame: pd.DataFrame) -> str:
    """The JSON of the frame's canonical rows (see `fingerprint`), a column at a time.

    Each column's values become JSON once per distinct value. The rows sort by
    json.dumps(row), whose ", " separators the compact text lacks; both sort alike: up to the
    first character where two rows differ they are the same text, and the difference is between
    the same two characters in both forms (a separator's space only follows a comma, and never
    where the rows already differ).
    """
    columns = [_json_values(frame.iloc[:, i]) for i in range(frame.shape[1])]
    rows = sorted(f"[{','.join(row)}]" for row in zip(*columns, strict=True))
    return "[" + ",".join([json.dumps(list(frame.columns), separators=(",", ":")), *rows]) + "]"


# Types whose equal values always have the same canonical JSON (not float: 0.0 == -0.0; not
# datetime: equal instants in two time zones; not bool with int: True == 1).
_EQUAL_MEANS_SAME_JSON = frozenset({str, int, bool, date})


def _json_values(column: pd.Series) -> np.ndarray:
    """json.dumps(canonical_value(value)) of each value of the column as itertuples gives it
    (Python scalars for a numeric column)."""
    values = column.to_numpy()
    if isinstance(column.dtype, np.dtype) and values.dtype.kind in "iub":
        return _by_distinct(values, values)
    if isinstance(column.dtype, np.dtype) and values.dtype.kind == "f":
        return _by_distinct(values, values.view(np.int64))  # by bits: -0.0 is not 0.0
    kinds = set(map(type, values)) - {type(None)}
    if column.dtype == object and len(kinds) <= 1 and kinds <= _EQUAL_MEANS_SAME_JSON:
        codes, distinct = pd.factorize(values)  # None is missing: code -1, the last token
        return np.append(_json_each(list(distinct)), "null")[codes]
    return _json_each(list(column))


def _by_distinct(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """_json_each of the values, computed once per distinct key."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return _json_each(values[first].tolist())[inverse]


def _json_each(values: list[Any]) -> np.ndarray:
    return _objects([json.dumps(canonical_value(value)) for value in values])
