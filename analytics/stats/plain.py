"""Conversion of numpy and pandas results into JSON-safe Python numbers."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """A plain float, or None for missing, NaN and infinite values (JSON has none of them)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def interval(low: Any, high: Any) -> list[float | None]:
    return [finite_or_none(low), finite_or_none(high)]
