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
