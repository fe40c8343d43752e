"""The analysis set as flat rows (SAP.md section 1: each patient's first index treatment by
day 0): the patients read in keyset pages with a fixed number of queries per page, the rules
that pick the worst toxicity grade and the best response, and the laboratory rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from django.db import models
from django.db.models import Exists, Max, Min, OuterRef, Q

from registry.domain import mrd
from registry.domain.vocabulary import GradingSystem, MrdStatus, Response, YesNoUnknown
from registry.models import (
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
    User,
)
from registry.models.labs import LAB_FIELDS
from registry.selectors import records_visible_to

# SAP.md section 1: the best response between day 0 and day 90 counts.
RESPONSE_WINDOW_DAYS = 90


EXPORT_CHUNK = 2000
RESPONSE_RANK = {
    Response.CR: 0,
    Response.CRI: 1,
    Response.PR: 2,
    Response.NR: 3,
    Response.NOT_EVALUABLE: 4,
}


def analysis_patients(*, user: User) -> models.QuerySet[Patient]:
    """The user's patients with an index treatment, in a stable order."""
    return (
        records_visible_to(Patient, user=user)
        .filter(Exists(Treatment.objects.filter(patient=OuterRef("pk"))))
        .order_by("site__code", "study_id", "pk")
    )


def analysis_rows(*, user: User) -> Iterator[dict[str, Any]]:
    """One row per patient of the analysis set, in the order of analysis_patients.

    The patients are read in keyset pages of EXPORT_CHUNK (site by site in code order, then by
    study ID, which is unique within a site), and each page's records with one `.values_list()`
    query per table, filtered by the page's range of study IDs: a fixed number of queries per
    page, and memory that does not grow with the registry.
    """
    patients = analysis_patients(user=user)
    sites = (
        Site.objects.filter(pk__in=patients.values("site_id"))
        .order_by("code", "pk")
        .values_list("pk", "code")
    )
    for site_id, code in sites:
        in_site = patients.filter(site_id=site_id).order_by("study_id", "pk")
        last_study_id = None
        while True:
            page = in_site if last_study_id is None else in_site.filter(study_id__gt=last_study_id)
            fields = ("pk", "study_id", "sex", "year_of_birth", "ph_status")
            page_patients = list(page.values_list(*fields)[:EXPORT_CHUNK])
            if not page_patients:
                break
            # The page is every patient of the site with a study ID in (last_study_id, its
            # last]: its records are found by that range (3 parameters, not a list of IDs).
            page_range = {"site_id": site_id, "study_id__lte": page_patients[-1][1]}
            if last_study_id is not None:
                page_range["study_id__gt"] = last_study_id
            records = _PageRecords.read(page_range)
            for patient in page_patients:
                yield analysis_row(patient, code, records)
            if len(page_patients) < EXPORT_CHUNK:
                break
            last_study_id = page_patients[-1][1]


# The records of a page as plain tuples; the field names are those of the models, so that the
# rules below read them as they would read model instances.
class Episode(NamedTuple):
    pk: int
    derived_grade: int | None
    recorded_grade: int | None
    grading_system: str

    # The grade analytics use, defined once on the model (ToxicityEpisode.grade).
    grade = CrsEpisode.grade


class Assessment(NamedTuple):
    pk: int
    date: date
    response: str
    mrd_status: str


class HsctRecord(NamedTuple):
    pk: int
    date: date
    type: str


TREATMENT_FIELDS = (
    "pk",
    "patient_id",
    "arm",
    "day0",
    "product",
    "disease_burden",
    "bm_blast_pct",
    "relapse_status",
    "prior_hsct",
    "crs_status",
    "icans_status",
)


@dataclass
class _PageRecords:
    """A page of patients' records, keyed by patient (or by their first treatment)."""

    first_treatments: dict[int, tuple]  # patient pk -> TREATMENT_FIELDS, earliest day 0 first
    deaths: dict[int, tuple[date, str]]
    crs: dict[int, list[Episode]]
    icans: dict[int, list[Episode]]
    responses: dict[int, list[Assessment]]
    transplants: dict[int, list[HsctRecord]]
    first_relapses: dict[int, date]  # treatment pk -> its first relapse
    last_contacts: dict[int, date]  # patient pk -> the last contact under any of its treatments

    @classmethod
    def read(cls, patients: dict[str, Any]) -> _PageRecords:
        """The records of the patients selected by `patients` (lookups on Patient).

        Records of patients outside the page (none, or some that analysis_patients leaves
        out) are read but not looked up: the rows are those of the page's patients.
        """

        def of(model: type[models.Model], path: str) -> models.QuerySet:
            return model.objects.filter(**{f"{path}__{k}": v for k, v in patients.items()})

        first: dict[int, tuple] = {}
        patient_of: dict[int, int] = {}
        for treatment in (
            of(Treatment, "patient")
            .order_by("patient_id", "day0", "pk")
            .values_list(*TREATMENT_FIELDS)
        ):
            patient_of[treatment[0]] = treatment[1]
            first.setdefault(treatment[1], treatment)
        last_contacts: dict[int, date] = {}
        for treatment_id, last in (
            of(FollowUpContact, "treatment__patient")
            .order_by()
            .values("treatment_id")
            .annotate(last=Max("date"))
            .values_list("treatment_id", "last")
        ):
            patient = patient_of[treatment_id]
            if patient not in last_contacts or last > last_contacts[patient]:
                last_contacts[patient] = last
        grades = ("treatment_id", "pk", "derived_grade", "recorded_grade", "grading_system")

        def by_treatment(model: type[models.Model], fields: tuple[str, ...], record: type):
            """The model's rows as `record` tuples (all fields but the first), by treatment."""
            grouped: dict[int, list] = {}
            rows = of(model, "treatment__patient").order_by().values_list(*fields)
            for treatment_id, *values in rows:
                grouped.setdefault(treatment_id, []).append(record(*values))
            return grouped

        return cls(
            first_treatments=first,
            deaths={
                patient: (day, cause)
                for patient, day, cause in of(Death, "patient").values_list(
                    "patient_id", "date", "cause"
                )
            },
            crs=by_treatment(CrsEpisode, grades, Episode),
            icans=by_treatment(IcansEpisode, grades, Episode),
            responses=by_treatment(
                ResponseAssessment,
                ("treatment_id", "pk", "date", "response", "mrd_status"),
                Assessment,
            ),
            transplants=by_treatment(
                Transplant, ("treatment_id", "pk", "date", "type"), HsctRecord
            ),
            first_relapses=dict(
                of(Relapse, "treatment__patient")
                .order_by()
                .values("treatment_id")
                .annotate(first=Min("date"))
                .values_list("treatment_id", "first")
            ),
            last_contacts=last_contacts,
        )


def analysis_row(patient: tuple, site: str, records: _PageRecords) -> dict[str, Any]:
    """The flat-file values of one patient's first index treatment (SAP.md section 1).

    `patient` is (pk, study_id, sex, year_of_birth, ph_status) and `site` its site's code.
    """
    patient_id, study_id, sex, year_of_birth, ph_status = patient
    (
        treatment_id,
        _,
        arm,
        day0,
        product,
        disease_burden,
        bm_blast_pct,
        relapse_status,
        prior_hsct,
        crs_status,
        icans_status,
    ) = records.first_treatments[patient_id]
    death = records.deaths.get(patient_id)
    crs_grade, crs_system = worst_grade(crs_status, records.crs.get(treatment_id, ()))
    icans_grade, _ = worst_grade(icans_status, records.icans.get(treatment_id, ()))
    response = best_response(records.responses.get(treatment_id, []), day0=day0)
    transplant = min(
        records.transplants.get(treatment_id, ()), key=lambda t: (t.date, t.pk), default=None
    )
    # INTERFACES.md section 3: the date of death for a patient who died; blank (unknown) for
    # one with no follow-up contact recorded.
    last_contact = death[0] if death is not None else records.last_contacts.get(patient_id)
    return {
        "study_id": study_id,
        "site": site,
        "sex": sex,
        "year_of_birth": year_of_birth,
        "ph_status": ph_status,
        "arm": arm,
        "treatment_start": day0,
        "product": product,
        "disease_burden": disease_burden or None,
        "bm_blast_pct": bm_blast_pct,
        "relapse_status": relapse_status or None,
        "prior_hsct": None if prior_hsct is None else ("yes" if prior_hsct else "no"),
        "crs_grade": crs_grade,
        "crs_grading_system": crs_system,
        "icans_grade": icans_grade,
        "response": response.response if response else None,
        "response_date": response.date if response else None,
        "mrd_negative": mrd_negative(response),
        "hsct_type": transplant.type if transplant else None,
        "hsct_date": transplant.date if transplant else None,
        "relapse_date": records.first_relapses.get(treatment_id),
        "death_date": death[0] if death else None,
        "death_cause": death[1] if death else None,
        "last_contact_date": last_contact,
    }


def worst_grade(status: str, episodes: Iterable[Episode]) -> tuple[int | None, str | None]:
    """The grade analytics use (SAP.md section 3) of the worst episode, and its grading system.

    A derived ASTCT grade is exported under astct2019 (it is one); a recorded grade under the
    system it was recorded in. Status "no" is grade 0; unknown (or "yes" with no episode) blank.
    """
    if status == YesNoUnknown.NO:
        return 0, None
    graded = [e for e in episodes if e.grade is not None]
    if status != YesNoUnknown.YES or not graded:
        return None, None
    worst = max(graded, key=lambda e: (e.grade, -e.pk))
    system = GradingSystem.ASTCT2019 if worst.derived_grade is not None else worst.grading_system
    return worst.grade, system


def best_response(responses: list[Assessment], *, day0: date) -> Assessment | None:
    """SAP.md section 1: the best response between day 0 and day 90 (an MRD-negative CR first);
    with none in that window, the first assessment."""
    window = [r for r in responses if 0 <= (r.date - day0).days <= RESPONSE_WINDOW_DAYS]
    if not window:
        return min(responses, key=lambda r: (r.date, r.pk), default=None)
    return min(
        window,
        key=lambda r: (
            not mrd.mrd_negative_cr(r.response, r.mrd_status),
            RESPONSE_RANK[Response(r.response)],
            r.date,
            r.pk,
        ),
    )


def mrd_negative(response: Assessment | None) -> str | None:
    if response is None:
        return None
    return {MrdStatus.NEGATIVE: "yes", MrdStatus.POSITIVE: "no"}.get(response.mrd_status)


LAB_EXPORT_CHUNK = 5000


def lab_rows(*, user: User) -> Iterator[dict[str, Any]]:
    """One row per laboratory value row of the analysis set's treatments (each patient's first
    index treatment by day 0, as analysis_row), in site, study-ID and date order, with the
    treatment's day 0 under "day0" (for deidentified_labs). One query, read in chunks."""
    # An earlier treatment of the same patient (by day 0, then by entry): an anti-join.
    earlier = Treatment.objects.filter(patient_id=OuterRef("treatment__patient_id")).filter(
        Q(day0__lt=OuterRef("treatment__day0"))
        | Q(day0=OuterRef("treatment__day0"), pk__lt=OuterRef("treatment_id"))
    )
    values = (
        LabValue.objects.filter(treatment__patient__in=analysis_patients(user=user))
        .filter(~Exists(earlier))
        .order_by("treatment__patient__site__code", "treatment__patient__study_id", "date", "pk")
        .values_list(
            "treatment__patient__site__code",
            "treatment__patient__study_id",
            "treatment__day0",
            "date",
            *LAB_FIELDS,
        )
    )
    for site, study_id, day0, when, *numbers in values.iterator(chunk_size=LAB_EXPORT_CHUNK):
        yield {
            "study_id": study_id,
            "site": site,
            "day0": day0,
            "date": when,
            **dict(zip(LAB_FIELDS, numbers, strict=True)),
        }
