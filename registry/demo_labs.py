"""The synthetic cohort's laboratory series (issue #17): what a ward measures after day 0, drawn
so that the derived ICAHT grades look like the EHA/EBMT consensus cohort's.

Rejeski et al. (Blood 2023;142:865-877) describe three courses of the neutrophil count after
CAR-T: a quick recovery after the lymphodepletion nadir, an intermittent one (recovery, then a
second dip after day 21) and an aplastic one (neutropenia of two weeks or more). Blinatumomab
gives milder, shorter dips. Each patient's series is drawn from its own random stream
(seeded by the cohort's seed and the patient's place in it), so adding the series changes no
other record of the cohort. Pure Python: the values are plain fields, written by
registry.demo through the services or in bulk.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from registry.domain import icaht
from registry.domain.vocabulary import Arm

Fields = dict[str, Any]

# The days a ward draws blood: daily in the first two CAR-T weeks, every few days to day 30,
# then at the visits to day 100 (about 25 values); blinatumomab less often. Day 30 closes the
# early ICAHT window: without a value on it, its last days are not observed.
CAR_T_DAYS = (*range(15), 16, 18, 21, 24, 27, 30, 42, 56, 70, 84, 100)
BLINATUMOMAB_DAYS = (0, 3, 7, 10, 14, 17, 21, 24, 27, 30, 42, 56, 84, 100)
# A few series are too sparse to grade (the data-quality query asks for the missing values).
SPARSE_DAYS = (0, 14, 30)
SPARSE_SHARE = 0.05
IGG_DAYS = {0, 30, 56, 100}
B_CELL_DAYS = {0, 30, 100}


@dataclass(frozen=True)
class AncCourse:
    """One patient's true ANC over time (cells/uL), before measurement noise."""

    baseline: float
    nadir: float
    nadir_day: int
    recovery_day: int  # back above 500 from this day
    plateau: float
    second_dip: tuple[int, int, float] | None = None  # first day, last day, lowest value

    def at(self, day: int) -> float:
        if day <= 0:
            return self.baseline
        if day < self.nadir_day:  # falling, geometrically, to the nadir
            share = day / self.nadir_day
            return self.baseline ** (1 - share) * max(self.nadir, 1) ** share
        if day < self.recovery_day:
            return self.nadir
        value = min(self.plateau, 500 * 1.6 ** (day - self.recovery_day + 1))
        if self.second_dip and self.second_dip[0] <= day <= self.second_dip[1]:
            value = min(value, self.second_dip[2])
        return value


def anc_course(rng: random.Random, arm: str) -> AncCourse:
    baseline = rng.uniform(800, 3500)
    plateau = rng.uniform(1200, 4000)
    if arm != Arm.CAR_T:
        nadir_day = rng.randint(5, 9)
        recovery = nadir_day + rng.randint(1, 6)
        if rng.random() < 0.2:  # a short dip below 500
            return AncCourse(baseline, rng.uniform(250, 490), nadir_day, recovery, plateau)
        return AncCourse(baseline, rng.uniform(600, 1400), nadir_day, recovery, plateau)
    kind = rng.choices(("quick", "intermittent", "aplastic"), weights=(55, 30, 15))[0]
    nadir_day = rng.randint(3, 6)
    if kind == "aplastic":
        return AncCourse(baseline, rng.uniform(0, 90), nadir_day, rng.randint(24, 80), plateau)
    nadir = rng.uniform(0, 90) if rng.random() < 0.5 else rng.uniform(100, 450)
    recovery = nadir_day + rng.randint(3, 11)
    dip = None
    if kind == "intermittent":
        first = rng.randint(22, 40)
        dip = (first, first + rng.randint(7, 25), rng.uniform(150, 1400))
    return AncCourse(baseline, nadir, nadir_day, recovery, plateau, dip)


def lab_series(
    rng: random.Random, *, arm: str, day0: date, last_day: date, cytokine_peak_day: int | None
) -> list[Fields]:
    """The rows (date and values) of one treatment's laboratory series, none after `last_day`
    (the last contact, or the day before death)."""
    sparse = rng.random() < SPARSE_SHARE
    days = SPARSE_DAYS if sparse else (CAR_T_DAYS if arm == Arm.CAR_T else BLINATUMOMAB_DAYS)
    course = anc_course(rng, arm)
    platelet_base = rng.uniform(60, 260)
    haemoglobin = rng.uniform(8.5, 12.5)
    igg = rng.uniform(5.5, 11)
    b_cells = rng.uniform(40, 400)
    rows = []
    for day in days:
        on = day0 + timedelta(days=day)
        if on > last_day:
            break
        anc = course.at(day) * rng.lognormvariate(0, 0.12)
        depth = min(1.0, max(course.at(day), 1) / max(course.baseline, 1))
        row: Fields = {
            "date": on,
            "anc_per_ul": min(round(anc), 100_000),
            "platelets_10e9_l": max(2, round(platelet_base * (0.25 + 0.75 * depth))),
            "haemoglobin_g_dl": _one_place(haemoglobin - 1.2 * (1 - depth) + rng.gauss(0, 0.3)),
        }
        if day <= 30:
            peak = cytokine_peak_day if cytokine_peak_day is not None else -100
            inflamed = math.exp(-((day - peak) ** 2) / 18)
            row["crp_mg_l"] = _one_place(rng.uniform(1, 12) + 180 * inflamed * rng.random())
            row["ferritin_ng_ml"] = int(rng.uniform(150, 900) + 4000 * inflamed * rng.random())
        if day in IGG_DAYS:
            decline = 0.55 if arm == Arm.CAR_T and day > 0 else 1.0
            row["igg_g_l"] = _one_place(max(1.5, igg * decline + rng.gauss(0, 0.4)))
        if day in B_CELL_DAYS:
            aplastic = day > 0 and (arm == Arm.CAR_T or day <= 30)
            row["cd19_b_cells_per_ul"] = _one_place(0 if aplastic else b_cells)
        rows.append(row)
    return rows


def icaht_fields(
    labs: list[Fields], *, day0: date, censor: date | None, death: date | None = None
) -> Fields:
    """The ICAHT fields registry.services stores on the treatment for this series (the same
    pure function, for the loaders that write the rows in bulk): `censor`, the first relapse,
    transplant or next treatment; `death`, the patient's death."""
    anc_values = [
        (row["date"], row["anc_per_ul"]) for row in labs if row.get("anc_per_ul") is not None
    ]
    return icaht.stored_fields(
        *icaht.results_from_dates(day0, anc_values, [censor] if censor else [], death)
    )


def _one_place(value: float) -> Decimal:
    return Decimal(f"{max(value, 0):.1f}")


# --- the late events of the same patients (issue #17) -------------------------------------------

INFECTION_BY_DAY100 = {Arm.CAR_T: 0.40, Arm.BLINATUMOMAB: 0.20}
SEVERE_ICAHT_INFECTION_BY_DAY100 = 0.55  # Rejeski 2023: severe infections go with severe ICAHT
LATE_INFECTION = 0.15  # a second infection between day 100 and day 400
INFECTION_SITES = (
    ("bloodstream", 30),
    ("respiratory", 35),
    ("urinary", 10),
    ("gastrointestinal", 10),
    ("skin_soft_tissue", 5),
    ("other", 5),
    ("unknown", 5),
)
ORGANISMS = (("bacterial", 50), ("viral", 30), ("fungal", 10), ("other", 5), ("unknown", 5))
LOW_IGG_G_L = Decimal("4.0")  # IVIG is given below 4 g/L
PERSISTENCE_DAYS = ((28, 35, 0.9), (85, 95, 0.7), (175, 190, 0.5))  # days, P(detected)


def late_events(
    rng: random.Random, *, arm: str, day0: date, last_day: date, labs: list[Fields]
) -> dict[str, list[Fields]]:
    """Infections, IVIG courses and CAR persistence assessments of one treatment, none after
    `last_day`, consistent with its laboratory series (IVIG after a low IgG; infections more
    likely after severe early neutropenia)."""
    severe = (icaht_fields(labs, day0=day0, censor=None)["icaht_early_grade"] or 0) >= 3

    def on(days: int) -> date:
        return day0 + timedelta(days=days)

    infections = []
    chance = SEVERE_ICAHT_INFECTION_BY_DAY100 if severe else INFECTION_BY_DAY100[Arm(arm)]
    for low, high, share in ((1, 100, chance), (101, 400, LATE_INFECTION)):
        if rng.random() < share and on(low) <= last_day:
            onset = on(rng.randint(low, high))
            if onset <= last_day:
                infections.append(
                    {
                        "onset": onset,
                        "site": _weighted(rng, INFECTION_SITES),
                        "organism_class": _weighted(rng, ORGANISMS),
                        "ctcae_grade": rng.choices((2, 3, 4), weights=(40, 45, 15))[0],
                        "treatment_required": "yes",
                        "notes": "",
                    }
                )
    ivig = []
    low_igg = [
        row for row in labs if row.get("igg_g_l") is not None and row["igg_g_l"] < LOW_IGG_G_L
    ]
    if low_igg:
        start = low_igg[0]["date"] + timedelta(days=rng.randint(1, 10))
        if start <= last_day:
            stop = start + timedelta(days=rng.randint(90, 365))
            ivig.append({"start": start, "stop": stop if stop <= last_day else None})
    persistence = []
    if arm == Arm.CAR_T:
        for low, high, detected in PERSISTENCE_DAYS:
            when = on(rng.randint(low, high))
            if when > last_day:
                break
            persistence.append(
                {
                    "date": when,
                    "method": rng.choices(("flow", "qpcr"), weights=(60, 40))[0],
                    "detected": rng.random() < detected,
                }
            )
    return {"infections": infections, "ivig_courses": ivig, "persistence": persistence}


def _weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([value for value, _ in options], weights=[w for _, w in options])[0]
