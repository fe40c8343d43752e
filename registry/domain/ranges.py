"""Plausible ranges of the numbers a person types (issue #14 point 8: a dose of -5 or 1e308
cells/kg was accepted). Imports no Django.

Most numeric fields carry their DOMAIN.md range on the model field itself (marrow blasts and MRD
0-100 %, temperature 34-43 C, O2 flow 0-80 L/min, vasopressors 0-5, ICE 0-10, grades 0-5) or in
registry.validation (year of birth within the last 110 years). The others have theirs here, from
clinical sense; registry.validation applies them on every write path, with a field message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    unit: str
    why: str


# (model name, field name) -> range.
RANGES: dict[tuple[str, str], Range] = {
    ("Treatment", "dose_cells_per_kg"): Range(
        1e4,
        1e8,
        "cells/kg",
        "CAR-T doses are 10^5 to 10^7 viable CAR-T cells per kg (tisagenlecleucel 0.2-5.0 x "
        "10^6/kg); a total cell count typed here would be above 10^8",
    ),
    ("Treatment", "cycles"): Range(
        1, 12, "cycles", "day 0 is the first day of cycle 1; protocols give up to 9 cycles"
    ),
    ("CrsEpisode", "tocilizumab_doses"): Range(
        0, 10, "doses", "the label allows at most 4 doses per CRS episode"
    ),
}


def in_range(value: float, rng: Range) -> bool:
    """Whether `value` is a finite number within the range (ends included)."""
    number = float(value)
    return math.isfinite(number) and rng.low <= number <= rng.high


# Laboratory values (DOMAIN.md "Hematotoxicity and late effects"): physiological ranges, so that
# a value typed in another unit (haemoglobin in g/L, platelets per uL) is refused.
RANGES |= {
    ("LabValue", "anc_per_ul"): Range(0, 100_000, "cells/µL", "DOMAIN.md: ANC 0-100,000/uL"),
    ("LabValue", "platelets_10e9_l"): Range(
        0, 2000, "×10⁹/L", "DOMAIN.md: platelets 0-2,000 x 10^9/L"
    ),
    ("LabValue", "haemoglobin_g_dl"): Range(
        2, 25, "g/dL", "below 2 g/dL is not compatible with life; 95 is a value in g/L"
    ),
    ("LabValue", "crp_mg_l"): Range(0, 1000, "mg/L", "CRP in CRS and sepsis stays below 700 mg/L"),
    ("LabValue", "ferritin_ng_ml"): Range(
        0,
        500_000,
        "ng/mL",
        "IEC-HS and HLH reach tens, rarely hundreds, of thousands of ng/mL",
    ),
    ("LabValue", "igg_g_l"): Range(0, 50, "g/L", "IgG in g/L; myeloma aside, below 50"),
    ("LabValue", "cd19_b_cells_per_ul"): Range(
        0, 5000, "cells/µL", "CD19+ B cells in blood: 0 in B-cell aplasia, about 100-500 normally"
    ),
}

# Late effects: grades as recorded (registry.models.late_effects; a database constraint stands
# behind each).
RANGES |= {
    ("Infection", "ctcae_grade"): Range(
        1, 5, "CTCAE grade", "CTCAE v5 grades an infection 1-5; 5 is death from it"
    ),
    ("IecHsEpisode", "recorded_grade"): Range(
        1, 5, "ASTCT IEC-HS grade", "Hines 2023 grades IEC-HS 1-5; 5 is death from it"
    ),
}
