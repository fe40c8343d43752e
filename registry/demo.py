"""The synthetic demo cohort of `seed_demo` (INTERFACES.md section 2), calibrated to STUDY.md.

Two steps. First a *plan*: every record of every patient as plain field values (no database),
drawn from one `random.Random(seed)` and nothing else, so the same seed gives the same data on
any day. Then a *load*: `seed_calibrated` writes the 21 + 80 patients of the study through
registry.services, exactly as a nurse's forms would (validated, derived, audited, data-quality
queries refreshed); `seed_scaled` writes N patients of the same shape in bulk (COPY on
PostgreSQL, registry.bulk), for scale tests, and checks a sample of them as the services would.

How the plan meets the study's numbers. Nothing that STUDY.md publishes is left to chance:
- Counts (CRS, burden, relapse status, response) are tables below, exact by construction;
  chance only decides which patient falls in which cell and the details of each record.
- Survival is a list of *courses*, one per patient, each giving day ranges for its events.
  The ranges are chosen so that the number of events before each landmark of the published
  curves (12 months, the medians) is fixed whatever the draw: a CAR-T patient is followed for
  at least 46 months, so the CAR-T curves are exact step counts (42/80 = 52.5% PFS at 12
  months, 50/80 = 62.5% OS; the 40th and 41st PFS events on days 371-380, 12.2-12.5 months;
  the 40th and 41st deaths on days 570-590, 18.7-19.4 months). Blinatumomab patients (day 0
  in 2021-2023) are censored early when treated late in 2023 or lost to follow-up; their
  courses place the six PFS events by day 175, before any censoring (15/21 = 71.4%), and the
  second death after five censorings (20/21 x 14/15 = 88.9% OS). Medians are not reached.
- Transplanted patients (UCBT, a few haplo in CAR-T; day 60-150, in MRD-negative CR) relapse
  less than the others after the transplant date too, so the time-dependent analyses of
  SAP.md section 7 show a benefit (CAR-T hazard ratio about 0.3), not only the naive test
  with its immortal time.
- Laboratory series (registry.demo_labs) come from each patient's own random stream, so they
  change nothing above; their ICAHT grades are derived as registry.services derives them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from registry import bulk, demo_labs, services
from registry.domain import icaht
from registry.domain.crs import CrsFindings, crs_grade
from registry.domain.followup import all_visits
from registry.domain.icans import IcansFindings, icans_grade
from registry.domain.identifiers import identifier_key
from registry.domain.vocabulary import (
    Arm,
    Cd19Status,
    CerebralOedema,
    Consciousness,
    CostimDomain,
    DeathCause,
    DiseaseBurden,
    DiseaseStatus,
    GradingSystem,
    MrdMethod,
    Oxygen,
    PhStatus,
    RelapseKind,
    RelapseStatus,
    Response,
    Role,
    Seizure,
    Sex,
    TransplantType,
    YesNoUnknown,
)
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
    User,
)
from registry.validation import patient_errors

CUTOFF = date(2024, 10, 31)  # the study's data cut-off: no date in the cohort is later
REASON = "synthetic demo cohort"
SEED_USERNAME = "seed"
DEFAULT_SEED = 2024

DEMO_SITE = ("AHP", "Anhui Provincial Hospital")
SECOND_SITE = ("XHC", "Xinhua Hospital, demo site 2")
# --patients spreads patients over these (AHP first).
SCALE_SITES = [
    DEMO_SITE,
    SECOND_SITE,
    ("S03", "Demo site 3"),
    ("S04", "Demo site 4"),
    ("S05", "Demo site 5"),
]

# One user per role (INTERFACES.md section 5) at AHP, and a nurse at XHC for site scoping.
DEMO_USERS: list[tuple[str, Role, str]] = [
    ("nurse", Role.NURSE, "AHP"),
    ("datamanager", Role.DATA_MANAGER, "AHP"),
    ("pi", Role.PI, "AHP"),
    ("admin", Role.ADMINISTRATOR, "AHP"),
    ("nurse_xhc", Role.NURSE, "XHC"),
]

MRD_SENSITIVITY_PCT = Decimal("0.01")  # flow cytometry at 10^-4 (DOMAIN.md "MRD negativity")
ASTCT_ADOPTED = date(2019, 1, 1)  # CAR-T toxicity before it: graded by Lee 2014 and CARTOX

Fields = dict[str, Any]


class AlreadySeeded(Exception):
    """The registry already holds patients with the study IDs this seed would create."""


# --- the cohort tables -------------------------------------------------------------------------

MRD_ONLY, MORPHOLOGIC = DiseaseBurden.MRD_ONLY, DiseaseBurden.MORPHOLOGIC
CR1, REFRACTORY = RelapseStatus.MRD_PERSISTENT_CR1, RelapseStatus.PRIMARY_REFRACTORY
FIRST, LATER = RelapseStatus.FIRST_RELAPSE, RelapseStatus.SECOND_OR_LATER_RELAPSE


@dataclass(frozen=True)
class Cell:
    """Patients of one arm with one disease burden and relapse status, and their CRS status."""

    burden: DiseaseBurden
    relapse_status: RelapseStatus
    patients: int
    crs_unknown: int
    crs_no: int

    @property
    def crs_yes(self) -> int:
        return self.patients - self.crs_unknown - self.crs_no


# STUDY.md: blinatumomab 12 MRD-only / 9 morphologic, CRS 11/21; CAR-T 14 / 66, CRS 64/67 with
# 13 unknown. Within every burden and relapse group blinatumomab has less CRS (Fisher p < 0.05:
# MRD-only 5/12 vs 12/12, morphologic 6/9 vs 52/55, not relapsed 4/8 vs 14/14, first relapse
# 5/8 vs 29/30, second or later 2/5 vs 21/23).
CELLS: dict[Arm, list[Cell]] = {
    Arm.BLINATUMOMAB: [
        Cell(MRD_ONLY, CR1, 6, 0, 4),
        Cell(MRD_ONLY, FIRST, 4, 0, 2),
        Cell(MRD_ONLY, LATER, 2, 0, 1),
        Cell(MORPHOLOGIC, REFRACTORY, 2, 0, 0),
        Cell(MORPHOLOGIC, FIRST, 4, 0, 1),
        Cell(MORPHOLOGIC, LATER, 3, 0, 2),
    ],
    Arm.CAR_T: [
        Cell(MRD_ONLY, CR1, 6, 1, 0),
        Cell(MRD_ONLY, FIRST, 5, 1, 0),
        Cell(MRD_ONLY, LATER, 3, 0, 0),
        Cell(MORPHOLOGIC, REFRACTORY, 10, 1, 0),
        Cell(MORPHOLOGIC, FIRST, 30, 4, 1),
        Cell(MORPHOLOGIC, LATER, 26, 6, 2),
    ],
}

# ASTCT grades of the episodes: blinatumomab all mild; CAR-T 26/64 severe (17 grade 3, 9 grade 4).
CRS_GRADES: dict[Arm, list[int]] = {
    Arm.BLINATUMOMAB: [1] * 8 + [2] * 3,
    Arm.CAR_T: [1] * 15 + [2] * 23 + [3] * 17 + [4] * 9,
}
# CAR-T ICANS: 20 episodes among the patients with CRS, 5 unknown among those with CRS unknown.
ICANS_GRADES = [1] * 8 + [2] * 6 + [3] * 5 + [4] * 1
ICANS_UNKNOWN = 5

# Day 0 windows (STUDY.md: blinatumomab 2021-2023, CAR-T 2016-2020). Blinatumomab: 18 patients
# up to mid-October 2023 (followed for more than 372 days) and three late in 2023 (307-349 days).
DAY0_WINDOWS: dict[Arm, tuple[date, date]] = {
    Arm.BLINATUMOMAB: (date(2021, 1, 4), date(2023, 10, 15)),
    Arm.CAR_T: (date(2016, 3, 1), date(2020, 12, 20)),
}
LATE_DAY0_WINDOW = (date(2023, 11, 17), date(2023, 12, 29))
ALIVE_LAST_CONTACT_MAX_DAYS_BEFORE_CUTOFF = 10

Days = tuple[int, int]


@dataclass(frozen=True)
class Course:
    """One patient's course after day 0, as inclusive ranges of days after day 0."""

    response: str  # best response by day 90: mrd_neg_cr, mrd_pos_cr, pr, nr, not_evaluable, none
    transplant: str = ""  # TransplantType, day 60-150 in MRD-negative CR
    progression: Days | None = None  # a Relapse record (relapse, or progression after PR/NE)
    death: Days | None = None
    death_gap: int = 0  # days at least from progression to death
    cause: str = ""
    lost: Days | None = None  # alive, lost to follow-up: the last contact
    late_day0: bool = False  # blinatumomab day 0 late in 2023 (short follow-up)
    count: int = 1

    @property
    def needs_morphologic(self) -> bool:
        # Only a patient not in remission at day 0 can fail to reach CR.
        return self.response in ("pr", "nr", "not_evaluable", "none")

    @property
    def min_followup_days(self) -> int:
        ends = [150 if self.transplant else 130]
        ends += [r[1] for r in (self.progression, self.death, self.lost) if r]
        return max(ends) + 20


UCBT, HAPLO = TransplantType.UCBT, TransplantType.HAPLO
DISEASE, INFECTION = DeathCause.DISEASE, DeathCause.INFECTION

COURSES: dict[Arm, list[Course]] = {
    # 6 PFS events by day 175 (NR, the MRD-positive CR, 4 relapses); one more at 15-20 months.
    # Deaths: day 110-170 (21 at risk), day 350-362 (15 at risk: 2 lost at month 6 and 3 treated
    # late in 2023 are censored before), and one after 20 months. Transplanted: no event.
    Arm.BLINATUMOMAB: [
        Course("nr", death=(110, 170), cause=DISEASE),
        Course("mrd_pos_cr", progression=(90, 150), death=(600, 800), cause=DISEASE),
        Course("mrd_neg_cr", progression=(80, 175), death=(350, 362), cause=DISEASE),
        Course("mrd_neg_cr", progression=(80, 175), count=3),
        Course("mrd_neg_cr", progression=(456, 610)),
        Course("mrd_neg_cr", lost=(176, 200), count=2),
        Course("mrd_neg_cr", count=3),
        Course("mrd_neg_cr", late_day0=True),
        Course("mrd_neg_cr", transplant=UCBT, count=6),
        Course("mrd_neg_cr", transplant=UCBT, late_day0=True, count=2),
    ],
    # PFS: 38 events by day 365 (42/80 = 52.5% at 12 months), the 39th to 41st on days 366-380
    # (median 12.2-12.5 months), 10 more later. OS: 30 deaths by day 365 (62.5%), 9 on days
    # 380-565, the 40th on 570-578 and the 41st on 579-590 (median 18.7-19.4), 7 more later.
    Arm.CAR_T: [
        Course("none", death=(9, 24), cause=INFECTION, count=2),
        Course("none", death=(9, 24), cause=DeathCause.OTHER_TREATMENT_RELATED),
        Course("nr", death=(70, 200), cause=DISEASE, count=4),
        Course("pr", progression=(55, 90), death=(130, 260), death_gap=40, cause=DISEASE, count=2),
        Course(
            "not_evaluable", progression=(100, 140), death=(200, 300), death_gap=40, cause=DISEASE
        ),
        Course("not_evaluable", death=(45, 80), cause=INFECTION),
        Course(
            "mrd_pos_cr",
            progression=(60, 150),
            death=(180, 340),
            death_gap=40,
            cause=DISEASE,
            count=4,
        ),
        # MRD-negative CR, then an allogeneic transplant: 7 events in 24 patients.
        Course("mrd_neg_cr", transplant=UCBT, death=(200, 330), cause=DeathCause.GVHD),
        Course("mrd_neg_cr", transplant=UCBT, death=(200, 330), cause=INFECTION),
        Course(
            "mrd_neg_cr",
            transplant=UCBT,
            progression=(240, 350),
            death=(450, 565),
            cause=DISEASE,
            count=2,
        ),
        Course(
            "mrd_neg_cr",
            transplant=UCBT,
            progression=(480, 900),
            death=(660, 1300),
            death_gap=180,
            cause=DISEASE,
            count=2,
        ),
        Course("mrd_neg_cr", transplant=HAPLO, progression=(480, 900)),
        Course("mrd_neg_cr", transplant=UCBT, count=13),
        Course("mrd_neg_cr", transplant=UCBT, lost=(685, 775)),
        Course("mrd_neg_cr", transplant=HAPLO, lost=(1050, 1140)),
        Course("mrd_neg_cr", transplant=HAPLO, count=2),
        # MRD-negative CR without a transplant: 29 events in 41 patients.
        Course(
            "mrd_neg_cr",
            progression=(60, 220),
            death=(120, 360),
            death_gap=60,
            cause=DISEASE,
            count=13,
        ),
        Course(
            "mrd_neg_cr",
            progression=(60, 330),
            death=(380, 560),
            death_gap=50,
            cause=DISEASE,
            count=6,
        ),
        # The 39th to 41st PFS events and the 40th and 41st deaths: lifelines may find the median
        # at the 41st event when S(t) is exactly 0.5 after the 40th, so both lie near the target.
        Course("mrd_neg_cr", progression=(366, 369), death=(480, 565), cause=DISEASE),
        Course("mrd_neg_cr", progression=(371, 374), death=(570, 578), cause=DISEASE),
        Course("mrd_neg_cr", progression=(375, 380), death=(579, 590), cause=DISEASE),
        Course(
            "mrd_neg_cr",
            progression=(420, 1000),
            death=(620, 1400),
            death_gap=200,
            cause=DISEASE,
            count=5,
        ),
        Course("mrd_neg_cr", progression=(420, 1000), count=2),
        Course("mrd_neg_cr", count=11),
        Course("mrd_neg_cr", lost=(685, 775)),
    ],
}


# --- the plan ----------------------------------------------------------------------------------


@dataclass
class PatientPlan:
    """Every record of one patient, as model field values (relations left to the loader)."""

    arm: str
    patient: Fields
    treatment: Fields
    crs: list[Fields] = field(default_factory=list)
    icans: list[Fields] = field(default_factory=list)
    responses: list[Fields] = field(default_factory=list)
    transplants: list[Fields] = field(default_factory=list)
    relapses: list[Fields] = field(default_factory=list)
    contacts: list[Fields] = field(default_factory=list)
    labs: list[Fields] = field(default_factory=list)
    infections: list[Fields] = field(default_factory=list)
    ivig_courses: list[Fields] = field(default_factory=list)
    persistence: list[Fields] = field(default_factory=list)
    death: Fields | None = None

    @property
    def study_id(self) -> str:
        return self.patient["study_id"]


def plan_digest(plans: list[PatientPlan]) -> str:
    """A fingerprint of a plan: equal plans, equal digests."""
    text = json.dumps([asdict(plan) for plan in plans], default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def calibrated_cohort(seed: int = DEFAULT_SEED) -> list[PatientPlan]:
    """The 21 blinatumomab and 80 CAR-T patients of STUDY.md, study IDs AHP-B001 / AHP-C001
    numbered by day 0."""
    rng = random.Random(seed)
    return _cohort(rng, lambda arm, n: f"{DEMO_SITE[0]}-{_ARM_LETTER[arm]}{n:03d}")


_ARM_LETTER = {Arm.BLINATUMOMAB: "B", Arm.CAR_T: "C"}


def _cohort(rng: random.Random, study_id: Callable[[Arm, int], str]) -> list[PatientPlan]:
    plans = []
    for arm in (Arm.BLINATUMOMAB, Arm.CAR_T):
        plans += _arm(rng, arm, study_id)
    return plans


@dataclass
class _Slot:
    """One patient of an arm while the plan is drawn."""

    cell: Cell
    crs: str  # YesNoUnknown
    course: Course | None = None
    day0: date | None = None
    crs_grade: int | None = None
    icans: str = YesNoUnknown.NO
    icans_grade: int | None = None


def _arm(rng: random.Random, arm: Arm, study_id: Callable[[Arm, int], str]) -> list[PatientPlan]:
    slots = [
        _Slot(cell, crs)
        for cell in CELLS[arm]
        for crs in (
            [YesNoUnknown.UNKNOWN] * cell.crs_unknown
            + [YesNoUnknown.NO] * cell.crs_no
            + [YesNoUnknown.YES] * cell.crs_yes
        )
    ]
    rng.shuffle(slots)
    _assign_courses(rng, arm, slots)
    _assign_day0s(rng, arm, slots)
    with_crs = [slot for slot in slots if slot.crs == YesNoUnknown.YES]
    for slot, grade in zip(with_crs, rng.sample(CRS_GRADES[arm], len(with_crs)), strict=True):
        slot.crs_grade = grade
    if arm == Arm.CAR_T:
        for slot, grade in zip(rng.sample(with_crs, len(ICANS_GRADES)), ICANS_GRADES, strict=True):
            slot.icans, slot.icans_grade = YesNoUnknown.YES, grade
        unknown = [slot for slot in slots if slot.crs == YesNoUnknown.UNKNOWN]
        for slot in rng.sample(unknown, ICANS_UNKNOWN):
            slot.icans = YesNoUnknown.UNKNOWN
    slots.sort(key=lambda slot: slot.day0)
    return [
        _patient_plan(rng, arm, slot, study_id(arm, number))
        for number, slot in enumerate(slots, start=1)
    ]


def _assign_courses(rng: random.Random, arm: Arm, slots: list[_Slot]) -> None:
    courses = [course for course in COURSES[arm] for _ in range(course.count)]
    assert len(courses) == len(slots), f"{arm}: {len(courses)} courses for {len(slots)} patients"
    rng.shuffle(courses)
    courses.sort(key=lambda course: not course.needs_morphologic)  # stable: those first
    free = list(slots)
    for course in courses:
        morphologic_only = course.needs_morphologic
        fits = [s for s in free if not morphologic_only or s.cell.burden == MORPHOLOGIC]
        slot = rng.choice(fits)
        slot.course = course
        free = [s for s in free if s is not slot]


def _assign_day0s(rng: random.Random, arm: Arm, slots: list[_Slot]) -> None:
    """Day 0s spread evenly over the arm's years; the longest courses take the earliest ones."""
    late = [slot for slot in slots if slot.course.late_day0]
    regular = [slot for slot in slots if not slot.course.late_day0]
    day0s = _spread(rng, *DAY0_WINDOWS[arm], len(regular))
    regular.sort(key=lambda slot: -slot.course.min_followup_days)
    for slot in regular:
        latest = CUTOFF - timedelta(days=slot.course.min_followup_days)
        fits = [d for d in day0s if d <= latest]
        if not fits:
            raise RuntimeError(f"no day 0 leaves {slot.course} enough follow-up")
        slot.day0 = rng.choice(fits)
        day0s.remove(slot.day0)
    for slot, day0 in zip(late, _spread(rng, *LATE_DAY0_WINDOW, len(late)), strict=True):
        slot.day0 = day0


def _spread(rng: random.Random, first: date, last: date, n: int) -> list[date]:
    """n dates, one drawn in each of n equal parts of [first, last]."""
    span = (last - first).days
    return (
        [first + timedelta(days=int(span * (i + rng.random()) / n)) for i in range(n)] if n else []
    )


def _between(rng: random.Random, days: Days) -> int:
    return rng.randint(*days)


def _pct(value: float, places: int = 2) -> Decimal:
    return Decimal(f"{value:.{places}f}")


def _patient_plan(rng: random.Random, arm: Arm, slot: _Slot, study_id: str) -> PatientPlan:
    course, day0, cell = slot.course, slot.day0, slot.cell
    assert course is not None and day0 is not None

    def on(days: int) -> date:
        return day0 + timedelta(days=days)

    age = rng.randint(5, 17) if rng.random() < 0.2 else rng.randint(18, 70)
    since_diagnosis = {
        CR1: (90, 300),
        REFRACTORY: (60, 200),
        FIRST: (300, 1500),
        LATER: (700, 2500),
    }[cell.relapse_status]
    diagnosis_days = min(_between(rng, since_diagnosis), (age - 1) * 365)
    patient = {
        "study_id": study_id,
        "sex": Sex.MALE if rng.random() < 0.56 else Sex.FEMALE,
        "year_of_birth": day0.year - age,
        "ph_status": rng.choices(
            [PhStatus.NEGATIVE, PhStatus.POSITIVE, PhStatus.UNKNOWN], weights=[70, 22, 8]
        )[0],
        "diagnosis_date": on(-diagnosis_days),
        "consent_date": on(-rng.randint(1, 14)),
    }

    # --- what happens when: response, transplant, progression, death, last contact ---
    response_day = rng.randint(26, 32) if arm == Arm.CAR_T else rng.randint(29, 42)
    transplant_day = (
        rng.randint(60, 150 if arm == Arm.CAR_T else 120) if course.transplant else None
    )
    progression_day = _between(rng, course.progression) if course.progression else None
    death_day = None
    if course.death:
        low, high = course.death
        if progression_day is not None:
            low = max(low, progression_day + course.death_gap)
        death_day = rng.randint(low, high)
    if death_day is not None:
        last_contact = None
    elif course.lost:
        last_contact = on(_between(rng, course.lost))
    else:
        last_contact = CUTOFF - timedelta(
            days=rng.randint(0, ALIVE_LAST_CONTACT_MAX_DAYS_BEFORE_CUTOFF)
        )
    end = on(death_day) if death_day is not None else last_contact
    # The first day the disease was known active again: NR at the assessment, or progression.
    active_from = (
        on(response_day)
        if course.response == "nr"
        else on(progression_day)
        if progression_day is not None
        else None
    )

    treatment = _treatment_fields(rng, arm, slot, day0, course)
    plan = PatientPlan(arm=arm, patient=patient, treatment=treatment)
    if slot.crs_grade is not None:
        plan.crs.append(_crs_episode(rng, arm, day0, slot.crs_grade, death_day))
    if slot.icans_grade is not None:
        crs_onset = plan.crs[0]["onset"] if plan.crs else on(3)
        plan.icans.append(_icans_episode(rng, day0, crs_onset, slot.icans_grade, death_day))
    if course.response != "none":
        plan.responses.append(
            _response(rng, course.response, on(response_day), cell, treatment["bm_blast_pct"])
        )
        # MRD monitoring around day 100 while still in remission and followed.
        second = on(rng.randint(95, 130))
        if (
            course.response == "mrd_neg_cr"
            and second < end
            and (active_from is None or second < active_from)
        ):
            plan.responses.append(_response(rng, "mrd_neg_cr", second, cell, None))
    if course.transplant:
        plan.transplants.append(
            {
                "date": on(transplant_day),
                "type": course.transplant,
                "conditioning": rng.choice(_CONDITIONING[course.transplant]),
            }
        )
    if progression_day is not None:
        after_cr = course.response in ("mrd_neg_cr", "mrd_pos_cr")
        plan.relapses.append(
            {
                "date": on(progression_day),
                "kind": rng.choices(
                    [RelapseKind.MORPHOLOGIC, RelapseKind.MRD, RelapseKind.EXTRAMEDULLARY],
                    weights=[70, 15, 15] if after_cr else [1, 0, 0],
                )[0],
                "cd19_status": rng.choices(
                    [Cd19Status.POSITIVE, Cd19Status.NEGATIVE, Cd19Status.UNKNOWN],
                    weights=[45, 40, 15] if arm == Arm.CAR_T else [55, 30, 15],
                )[0],
            }
        )
    plan.contacts = _contacts(
        rng,
        arm,
        day0,
        end,
        died=death_day is not None,
        active_from=active_from,
        remission_known=course.response not in ("not_evaluable", "none"),
        costim=treatment.get("costim_domain", ""),
    )
    if death_day is not None:
        plan.death = {"date": on(death_day), "cause": course.cause}
    # The laboratory series from a stream of its own (seeded by values this patient's stream
    # drew): the rest of the cohort, calibrated on the study, draws exactly what it drew before.
    labs_rng = random.Random(f"labs:{day0}:{age}:{diagnosis_days}:{response_day}:{death_day}")
    last_day = on(death_day - 1) if death_day is not None else end
    plan.labs = demo_labs.lab_series(
        labs_rng,
        arm=arm,
        day0=day0,
        last_day=last_day,
        cytokine_peak_day=(plan.crs[0]["onset"] - day0).days if plan.crs else None,
    )
    late = demo_labs.late_events(labs_rng, arm=arm, day0=day0, last_day=last_day, labs=plan.labs)
    plan.infections = late["infections"]
    plan.ivig_courses = late["ivig_courses"]
    plan.persistence = late["persistence"]
    return plan


def icaht_of_plan(plan: PatientPlan) -> Fields:
    """The ICAHT fields registry.services would store on the plan's treatment."""
    ends = [record["date"] for record in (*plan.relapses, *plan.transplants)]
    return demo_labs.icaht_fields(
        plan.labs,
        day0=plan.treatment["day0"],
        censor=min(ends, default=None),
        death=plan.death["date"] if plan.death else None,
    )


_CONDITIONING = {
    UCBT: [
        "TBI 12 Gy + cyclophosphamide + fludarabine",
        "Busulfan + cyclophosphamide + fludarabine",
        "Thiotepa + busulfan + fludarabine",
    ],
    HAPLO: ["Busulfan + cyclophosphamide + ATG", "TBI + cyclophosphamide + ATG"],
}
_CAR_T_PRODUCTS = {
    CostimDomain.FOUR_1BB: "Anti-CD19 CAR-T (academic, 4-1BB)",
    CostimDomain.CD28: "Anti-CD19 CAR-T (academic, CD28)",
}
_BRIDGING = ["", "", "Low-dose chemotherapy (VP)", "Dasatinib", "Intrathecal chemotherapy"]


def _treatment_fields(
    rng: random.Random, arm: Arm, slot: _Slot, day0: date, course: Course
) -> Fields:
    cell = slot.cell
    extramedullary = False
    if cell.burden == MRD_ONLY:
        blasts = rng.uniform(0.0, 4.0)
    elif course.response in ("mrd_neg_cr", "mrd_pos_cr") and rng.random() < 0.05:
        blasts, extramedullary = rng.uniform(0.5, 4.5), True  # isolated extramedullary disease
    else:
        blasts = rng.uniform(30, 90) if course.response == "pr" else rng.uniform(6, 92)
        extramedullary = rng.random() < 0.1
    prior_hsct = rng.random() < {CR1: 0, REFRACTORY: 0, FIRST: 0.1, LATER: 0.3}[cell.relapse_status]
    fields: Fields = {
        "arm": arm,
        "day0": day0,
        "disease_burden": cell.burden,
        "bm_blast_pct": _pct(blasts),
        "extramedullary": extramedullary,
        "relapse_status": cell.relapse_status,
        "prior_hsct": prior_hsct,
        "cd19_positive": YesNoUnknown.YES,
        "crs_status": slot.crs,
        "icans_status": slot.icans,
    }
    if arm == Arm.CAR_T:
        costim = CostimDomain.FOUR_1BB if rng.random() < 0.7 else CostimDomain.CD28
        fields |= {
            "product": _CAR_T_PRODUCTS[costim],
            "costim_domain": costim,
            "dose_cells_per_kg": rng.choice([0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0]) * 1e6,
            "lymphodepletion": "Fludarabine 30 mg/m2 + cyclophosphamide 300 mg/m2, days -5 to -3",
            "bridging": rng.choice(_BRIDGING),
        }
    else:
        fields |= {
            "product": "Blinatumomab",
            "cycles": rng.randint(1, 2) if course.transplant else rng.randint(1, 4),
        }
    return fields


def _crs_episode(
    rng: random.Random, arm: Arm, day0: date, grade: int, death_day: int | None
) -> Fields:
    """Worst-day findings whose ASTCT 2019 grade (Lee 2019, table 1) is `grade`."""
    temperature = rng.uniform(38.0, 39.5) if grade == 1 else rng.uniform(38.3, 40.8)
    masked = False
    hypotension, vasopressors, vasopressin = False, 0, False
    oxygen, flow = Oxygen.NONE, None
    if grade == 2:
        kind = rng.choice(["hypotension", "oxygen", "both"])
        hypotension = kind != "oxygen"
        if kind != "hypotension":
            oxygen, flow = Oxygen.LOW_FLOW, rng.randint(1, 6)
    elif grade == 3:
        kind = rng.choice(["vasopressor", "high_flow", "cannula_above_6"])
        if kind == "vasopressor":
            hypotension, vasopressors, vasopressin = True, 1, rng.random() < 0.3
            if rng.random() < 0.5:
                oxygen, flow = Oxygen.LOW_FLOW, rng.randint(2, 6)
        elif kind == "high_flow":
            oxygen, flow = Oxygen.HIGH_FLOW, rng.choice([10, 15, 20, 30, 40])
            hypotension = rng.random() < 0.5
        else:  # a nasal cannula above 6 L/min is high flow (Lee 2019)
            oxygen, flow = Oxygen.LOW_FLOW, rng.randint(7, 10)
    elif grade == 4:
        if rng.random() < 0.6:
            hypotension, vasopressors = True, rng.randint(2, 3)
            oxygen, flow = Oxygen.HIGH_FLOW, rng.choice([15, 30, 40])
        else:
            hypotension, vasopressors = True, rng.randint(0, 1)
            oxygen = Oxygen.POSITIVE_PRESSURE
    if grade >= 2 and rng.random() < 0.25:
        # Fever masked by tocilizumab or steroids: graded on hypotension and hypoxia alone.
        masked, temperature = True, rng.uniform(36.6, 37.9)
    tocilizumab = {1: 0, 2: rng.randint(0, 1), 3: rng.randint(1, 2), 4: rng.randint(2, 3)}[grade]
    findings = CrsFindings(
        max_temperature_c=round(temperature, 1),
        fever_masked=masked,
        hypotension=hypotension,
        vasopressors=vasopressors,
        vasopressin=vasopressin,
        oxygen=oxygen,
        o2_flow_l_min=flow,
    )
    assert crs_grade(findings) == grade, (findings, grade)

    if arm == Arm.CAR_T:
        onset_day = rng.randint(1, 7) if death_day is None else rng.randint(1, 5)
    else:
        onset_day = rng.randint(0, 3)
    resolution_day = onset_day + rng.randint(1, 4) + 2 * grade
    if death_day is not None and resolution_day >= death_day:
        resolution_day = None  # still ongoing when the patient died
    old_system = arm == Arm.CAR_T and day0 < ASTCT_ADOPTED
    return {
        "onset": day0 + timedelta(days=onset_day),
        "resolution": None if resolution_day is None else day0 + timedelta(days=resolution_day),
        "grading_system": GradingSystem.LEE2014 if old_system else GradingSystem.ASTCT2019,
        "recorded_grade": grade if old_system else None,
        "max_temperature_c": _pct(findings.max_temperature_c, 1),
        "fever_masked": masked,
        "hypotension": hypotension,
        "vasopressors": vasopressors,
        "vasopressin": vasopressin,
        "oxygen": oxygen,
        "o2_flow_l_min": None if flow is None else _pct(flow, 1),
        "tocilizumab_doses": max(tocilizumab, 1) if masked else tocilizumab,
        "corticosteroids": grade >= 3 or (grade == 2 and rng.random() < 0.3),
        "icu_admission": grade == 4 or (grade == 3 and rng.random() < 0.5),
    }


def _icans_episode(
    rng: random.Random, day0: date, crs_onset: date, grade: int, death_day: int | None
) -> Fields:
    """Worst findings whose ASTCT 2019 ICANS grade (Lee 2019, table 5) is `grade`."""
    consciousness, seizure, oedema = Consciousness.AWAKE, Seizure.NONE, CerebralOedema.NONE
    if grade == 1:
        ice = rng.randint(7, 9)
    elif grade == 2:
        ice = rng.randint(3, 6)
        consciousness = rng.choice([Consciousness.AWAKE, Consciousness.WAKES_TO_VOICE])
    elif grade == 3:
        kind = rng.choice(["touch", "seizure", "oedema"])
        ice = rng.randint(0, 2) if kind == "touch" else rng.randint(2, 6)
        if kind == "touch":
            consciousness = Consciousness.WAKES_TO_TOUCH
        elif kind == "seizure":
            seizure = Seizure.RESOLVED_RAPIDLY
        else:
            oedema = CerebralOedema.FOCAL
    else:
        ice, consciousness = 0, Consciousness.UNAROUSABLE
    findings = IcansFindings(
        ice_score=ice,
        consciousness=consciousness,
        seizure=seizure,
        motor_weakness=False,
        cerebral_oedema=oedema,
    )
    assert icans_grade(findings) == grade, (findings, grade)
    onset = crs_onset + timedelta(days=rng.randint(1, 4))
    last_day = None if death_day is None else day0 + timedelta(days=death_day - 1)
    if last_day is not None:
        onset = min(onset, last_day)
    resolution = onset + timedelta(days=rng.randint(1, 3) + 2 * grade)
    if last_day is not None and resolution > last_day:
        resolution = None
    old_system = day0 < ASTCT_ADOPTED
    return {
        "onset": onset,
        "resolution": resolution,
        "grading_system": GradingSystem.CARTOX if old_system else GradingSystem.ASTCT2019,
        "recorded_grade": grade if old_system else None,
        "ice_score": ice,
        "consciousness": consciousness,
        "seizure": seizure,
        "motor_weakness": False,
        "cerebral_oedema": oedema,
    }


def _response(
    rng: random.Random, kind: str, on: date, cell: Cell, baseline_blasts: Decimal | None
) -> Fields:
    fields: Fields = {"date": on, "mrd_method": MrdMethod.FLOW}
    if kind in ("mrd_neg_cr", "mrd_pos_cr"):
        fields["response"] = (
            Response.CRI if cell.burden == MORPHOLOGIC and rng.random() < 0.2 else Response.CR
        )
        fields["bm_blast_pct"] = _pct(rng.uniform(0.0, 3.0))
        fields["mrd_sensitivity_pct"] = MRD_SENSITIVITY_PCT
        if kind == "mrd_pos_cr":
            fields["mrd_result_pct"] = _pct(rng.uniform(0.02, 0.9), 3)
        elif rng.random() < 0.5:
            fields["mrd_undetectable"] = True
        else:
            fields["mrd_result_pct"] = _pct(rng.randint(1, 8) / 1000, 3)  # below 0.01%
    elif kind == "pr":
        fields["response"] = Response.PR
        fields["bm_blast_pct"] = _pct(max(5.5, float(baseline_blasts) * rng.uniform(0.2, 0.4)))
        fields["mrd_method"] = ""
    elif kind == "nr":
        fields["response"] = Response.NR
        fields["bm_blast_pct"] = _pct(rng.uniform(20, 85))
        fields["mrd_method"] = ""
    else:  # not evaluable: an aplastic marrow at the assessment
        fields["response"] = Response.NOT_EVALUABLE
        fields["mrd_method"] = ""
    return fields


def _contacts(
    rng: random.Random,
    arm: Arm,
    day0: date,
    end: date,
    *,
    died: bool,
    active_from: date | None,
    remission_known: bool,
    costim: str,
) -> list[Fields]:
    """Contacts at the DOMAIN.md visits until death (before it) or the last contact (on it)."""
    dates = []
    for visit in all_visits():
        day = min(max(visit.target_day + rng.randint(-7, 7), visit.opens_day), visit.closes_day)
        on = day0 + timedelta(days=day)
        if on >= end:
            break
        if not died and day0 + timedelta(days=visit.closes_day) >= end:
            break  # the last contact falls in (or before the end of) this visit's window
        dates.append(on)
    if not died:
        dates.append(end)
    # CAR-T persistence: B-cell aplasia lasts months with a 4-1BB construct, weeks with CD28.
    aplasia_days = (
        rng.randint(180, 900) if costim == CostimDomain.FOUR_1BB else rng.randint(30, 120)
    )
    at_cutoff = not died and (CUTOFF - end).days <= ALIVE_LAST_CONTACT_MAX_DAYS_BEFORE_CUTOFF
    contacts = []
    for on in dates:
        active = active_from is not None and on >= active_from
        if not remission_known and not active:
            status = DiseaseStatus.UNKNOWN
        else:
            status = DiseaseStatus.RELAPSED if active else DiseaseStatus.REMISSION
        if arm != Arm.CAR_T:
            aplasia = YesNoUnknown.UNKNOWN
        elif active or (on - day0).days > aplasia_days:
            aplasia = YesNoUnknown.NO
        else:
            aplasia = YesNoUnknown.YES
        contacts.append(
            {
                "date": on,
                "disease_status": status,
                "b_cell_aplasia": aplasia,
                "notes": "Status confirmed at the data cut-off." if at_cutoff and on == end else "",
            }
        )
    return contacts


# --- sites and users ---------------------------------------------------------------------------


def ensure_site(code: str, name: str) -> Site:
    site, _ = Site.objects.get_or_create(code=code, defaults={"name": name})
    return site


def seed_user() -> User:
    """The administrator every seeded record is written by (no password: nobody signs in)."""
    user, created = User.objects.get_or_create(
        username=SEED_USERNAME, defaults={"role": Role.ADMINISTRATOR}
    )
    if created:
        user.set_unusable_password()
        user.save()
    elif user.role != Role.ADMINISTRATOR:
        raise AlreadySeeded(f"User {SEED_USERNAME!r} exists and is not an administrator.")
    return user


def demo_password(username: str) -> str:
    return f"demo-{username}-2024"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    site: str
    password: str  # empty when the user already existed (its password is left alone)


def ensure_demo_users(sites: dict[str, Site]) -> list[DemoUser]:
    """One user per role at AHP and a nurse at XHC; existing users are left as they are."""
    made = []
    for username, role, site_code in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        password = ""
        if user is None:
            user = User(username=username, role=role)
            password = demo_password(username)
            validate_password(password, user)
            user.set_password(password)
            user.save()
            user.sites.set([sites[site_code]])
        made.append(DemoUser(username, user.role, site_code, password))
    return made


@dataclass(frozen=True)
class Seeded:
    patients: dict[str, int]  # per arm
    sites: list[str]
    users: list[DemoUser]


# --- loading -----------------------------------------------------------------------------------


def seed_calibrated(*, seed: int = DEFAULT_SEED) -> Seeded:
    """The calibrated cohort at AHP, every record through registry.services, all or nothing."""
    plans = calibrated_cohort(seed)
    with transaction.atomic():
        site = ensure_site(*DEMO_SITE)
        sites = {DEMO_SITE[0]: site, SECOND_SITE[0]: ensure_site(*SECOND_SITE)}
        existing = Patient.objects.filter(
            site=site, study_id__in=[plan.study_id for plan in plans]
        ).first()
        if existing is not None:
            raise AlreadySeeded(
                f"The demo cohort is already seeded: {existing.study_id} exists at "
                f"{site.code}. Flush the database (manage.py flush) to seed it again."
            )
        user = seed_user()
        users = ensure_demo_users(sites)
        # Each write is checked as it is made; the data-quality queries are refreshed once, for
        # every patient, at the end (as after a cohort import), not after each record.
        with services.queries_refreshed_together():
            for plan in plans:
                load_through_services(plan, site=site, user=user)
    return Seeded(_arm_counts(plans), [site.code], users)


def load_through_services(plan: PatientPlan, *, site: Site, user: User) -> Patient:
    """One patient's records, each written as a person would write it."""
    create = services.record_create
    patient = create(Patient, user=user, reason=REASON, site=site, **plan.patient)
    treatment = create(Treatment, user=user, reason=REASON, patient=patient, **plan.treatment)
    for model, rows in child_records(plan):
        if model is LabValue:  # a series is entered as one grid, one audited write
            if rows:
                services.lab_series_save(treatment=treatment, rows=rows, user=user, reason=REASON)
            continue
        for fields in rows:
            create(model, user=user, reason=REASON, treatment=treatment, **fields)
    if plan.death is not None:
        services.death_record(patient=patient, user=user, reason=REASON, **plan.death)
    return patient


def child_records(plan: PatientPlan) -> list[tuple[type, list[Fields]]]:
    """The records that hang off the treatment, by model, in the order they are written
    (responses before relapses: a relapse is checked against the first CR)."""
    return [
        (CrsEpisode, plan.crs),
        (IcansEpisode, plan.icans),
        (ResponseAssessment, plan.responses),
        (Transplant, plan.transplants),
        (Relapse, plan.relapses),
        (FollowUpContact, plan.contacts),
        (LabValue, plan.labs),
        (Infection, plan.infections),
        (IvigCourse, plan.ivig_courses),
        (CarPersistence, plan.persistence),
    ]


def _arm_counts(plans: list[PatientPlan]) -> dict[str, int]:
    counts = {Arm.BLINATUMOMAB.value: 0, Arm.CAR_T.value: 0}
    for plan in plans:
        counts[plan.arm] += 1
    return counts


COHORT_SIZE = sum(cell.patients for cells in CELLS.values() for cell in cells)  # 101


def scaled_plans(n: int, *, seed: int = DEFAULT_SEED) -> Iterator[tuple[str, list[PatientPlan]]]:
    """N patients as blocks of the calibrated cohort (each block drawn from its own seed and
    calibrated on its own), spread over SCALE_SITES block by block; the last block is a random
    part of one. Yields (site code, plans) per block. Study IDs: SITE-B000001 / SITE-C000001."""
    numbers = {(code, arm): 0 for code, _ in SCALE_SITES for arm in Arm}
    blocks = -(-n // COHORT_SIZE)
    for block in range(blocks):
        code = SCALE_SITES[block % len(SCALE_SITES)][0]
        rng = random.Random(f"{seed}:{block}")
        plans = _cohort(rng, lambda arm, number: "")
        size = min(COHORT_SIZE, n - block * COHORT_SIZE)
        if size < COHORT_SIZE:
            plans = [plans[i] for i in sorted(rng.sample(range(COHORT_SIZE), size))]
        for plan in plans:
            numbers[code, plan.arm] += 1
            letter = _ARM_LETTER[Arm(plan.arm)]
            plan.patient["study_id"] = f"{code}-{letter}{numbers[code, plan.arm]:06d}"
        yield code, plans


CHECKED_EVERY_BLOCKS = 1000  # 0.1% of a large seed; the first 101 patients of any
COPY_CHUNK_BLOCKS = 100  # 10,100 patients, about 115,000 records, in memory at a time
INSERT_CHUNK_BLOCKS = 20
CHILD_MODELS: list[type] = [  # child_records' order
    CrsEpisode,
    IcansEpisode,
    ResponseAssessment,
    Transplant,
    Relapse,
    FollowUpContact,
    LabValue,
    Infection,
    IvigCourse,
    CarPersistence,
]
CLINICAL_MODELS: list[type] = [Patient, Treatment, *CHILD_MODELS, Death]


def seed_scaled(
    n: int,
    *,
    seed: int = DEFAULT_SEED,
    batch_size: int = 2000,
    chunk_blocks: int | None = None,
    checked_every: int = CHECKED_EVERY_BLOCKS,
    copy: bool | None = None,
) -> Seeded:
    """N synthetic patients written in bulk, history rows included, all or nothing.

    Fast because it skips what a person's write costs: registry.services' queries per record
    and the data-quality refresh (the nightly quality.refresh_all opens those queries later).
    The plans are drawn exactly as those of the calibrated cohort, which the tests write
    through full validation; the derived values (ASTCT grades, MRD status) come from the same
    pure functions (services.derive); and one block in `checked_every` (the first included) is
    checked once saved, every record through services.full_validate and every patient through
    the rules across their records, as a person's write is: one broken rule rolls it all back.

    On PostgreSQL the rows are streamed with COPY (registry.bulk), `chunk_blocks` blocks at a
    time (memory stays bounded whatever N); elsewhere (the SQLite demo), or with copy=False,
    inserted with bulk_create.
    """
    if copy is None:
        copy = connection.vendor == "postgresql"
    chunk_blocks = chunk_blocks or (COPY_CHUNK_BLOCKS if copy else INSERT_CHUNK_BLOCKS)
    counts = {Arm.BLINATUMOMAB.value: 0, Arm.CAR_T.value: 0}
    used: list[str] = []
    with transaction.atomic():
        sites = {code: ensure_site(code, name) for code, name in SCALE_SITES}
        user = seed_user()
        users = ensure_demo_users(sites)
        foreign_keys = []
        if copy:
            bulk.tables_locked(CLINICAL_MODELS)
            foreign_keys = bulk.foreign_keys_dropped(CLINICAL_MODELS)
        pending: list[tuple[Site, PatientPlan]] = []
        checked: list[str] = []  # the study IDs of the blocks checked
        for number, (code, plans) in enumerate(scaled_plans(n, seed=seed)):
            pending += [(sites[code], plan) for plan in plans]
            if number % checked_every == 0:
                checked += [plan.study_id for plan in plans]
            if code not in used:
                used.append(code)
            for plan in plans:
                counts[plan.arm] += 1
            if (number + 1) % chunk_blocks == 0:
                _load(pending, user=user, batch_size=batch_size, copy=copy)
                pending = []
        if pending:
            _load(pending, user=user, batch_size=batch_size, copy=copy)
        if copy:
            bulk.foreign_keys_added(foreign_keys)
            bulk.tables_analyzed(CLINICAL_MODELS)
        check_saved(Patient.objects.filter(site__in=sites.values(), study_id__in=checked))
        services.site_data_changed(site.pk for site in sites.values())
    return Seeded(counts, used, users)


def check_saved(patients: Iterable[Patient]) -> None:
    """Check these saved patients and all their records as a person's write is checked
    (services.full_validate against the saved state, then the rules across the patient's
    records); raise ValidationError naming the first record that breaks a rule."""
    for patient in patients:
        records: list = [patient]
        for treatment in patient.treatments.all():  # each with this patient object
            records.append(treatment)
            derived = icaht.stored_fields(*services.icaht_of(treatment))
            if any(getattr(treatment, name) != value for name, value in derived.items()):
                raise ValidationError(
                    f"Treatment {treatment.pk} of {patient.study_id}: its ICAHT fields differ "
                    f"from the grades its laboratory series gives ({derived})."
                )
            for model in CHILD_MODELS:
                for record in model.objects.filter(treatment=treatment):
                    record.treatment = treatment  # one patient object: its death read once
                    records.append(record)
        records += Death.objects.filter(patient=patient)
        for record in records:
            try:
                services.full_validate(record)
            except ValidationError as error:
                raise ValidationError(
                    f"{type(record).__name__} {record.pk} of {patient.study_id}: {error}"
                ) from error
        if errors := patient_errors(patient):
            raise ValidationError(f"{patient.study_id}: {errors}")


def _load(rows: list[tuple[Site, PatientPlan]], *, user: User, batch_size: int, copy: bool) -> None:
    by_site: dict[int, list[str]] = {}
    for site, plan in rows:
        by_site.setdefault(site.pk, []).append(plan.study_id)
    for site_id, study_ids in by_site.items():
        existing = Patient.objects.filter(site_id=site_id, study_id__in=study_ids).first()
        if existing is not None:
            raise AlreadySeeded(
                f"These synthetic patients are already seeded: {existing.study_id} exists at "
                f"{existing.site.code}. Flush the database (manage.py flush) to seed again."
            )
    if copy:
        _copy_load(rows, user=user)
    else:
        _bulk_load(rows, user=user, batch_size=batch_size)


def _copy_load(rows: list[tuple[Site, PatientPlan]], *, user: User) -> None:
    """The rows of these plans, streamed by COPY in the order _bulk_load inserts them (the
    same records, the same keys), with their history rows."""
    when = timezone.now()

    def copy(model: type, records: list[Fields]) -> int:
        return bulk.copy_created(model, records, user_id=user.pk, reason=REASON, when=when)

    first_patient = copy(
        Patient,
        [
            # the study ID key that Patient.save() and its manager's bulk_create set
            plan.patient | {"site_id": site.pk, "study_id_key": identifier_key(plan.study_id)}
            for site, plan in rows
        ],
    )
    first_treatment = copy(
        Treatment,
        [
            plan.treatment | icaht_of_plan(plan) | {"patient_id": first_patient + i}
            for i, (_, plan) in enumerate(rows)
        ],
    )
    children: dict[type, list[Fields]] = {}
    derived = _Deriver()
    for i, (_, plan) in enumerate(rows):
        for model, records in child_records(plan):
            for fields in records:
                children.setdefault(model, []).append(
                    derived(model, fields | {"treatment_id": first_treatment + i})
                )
    for model, records in children.items():
        copy(model, records)
    copy(
        Death,
        [
            plan.death | {"patient_id": first_patient + i}
            for i, (_, plan) in enumerate(rows)
            if plan.death is not None
        ],
    )


DERIVED_MODELS = (CrsEpisode, IcansEpisode, ResponseAssessment)  # what services.derive fills


class _Deriver:
    """services.derive applied to field values: one model object per model, given each
    record's values in turn (a new object per record cost more than the rest of its load)."""

    def __init__(self) -> None:
        self._records: dict[type, tuple[Any, Fields]] = {}

    def __call__(self, model: type, fields: Fields) -> Fields:
        """The fields with the values services.derive gives the record (grades, MRD status)."""
        if not issubclass(model, DERIVED_MODELS):
            return fields
        if model not in self._records:
            record = model()
            self._records[model] = (record, dict(record.__dict__))
        record, blank = self._records[model]
        given = blank | fields
        record.__dict__.update(given)
        services.derive(record)
        return fields | {
            name: value for name, value in record.__dict__.items() if given.get(name) != value
        }


def _bulk_load(rows: list[tuple[Site, PatientPlan]], *, user: User, batch_size: int) -> None:
    def insert(model: type, objects: list) -> None:
        if objects:
            bulk_create_with_history(
                objects,
                model,
                batch_size=batch_size,
                default_user=user,
                default_change_reason=REASON,
            )

    patients = [Patient(site=site, **plan.patient) for site, plan in rows]
    insert(Patient, patients)
    treatments = [
        Treatment(patient=patient, **plan.treatment, **icaht_of_plan(plan))
        for patient, (_, plan) in zip(patients, rows, strict=True)
    ]
    insert(Treatment, treatments)
    children: dict[type, list] = {}
    for treatment, (_, plan) in zip(treatments, rows, strict=True):
        for model, records in child_records(plan):
            for fields in records:
                record = model(treatment=treatment, **fields)
                services.derive(record)
                children.setdefault(model, []).append(record)
    for model, records in children.items():
        insert(model, records)
    insert(
        Death,
        [
            Death(patient=patient, **plan.death)
            for patient, (_, plan) in zip(patients, rows, strict=True)
            if plan.death is not None
        ],
    )
