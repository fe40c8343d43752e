"""How numbers read in the report: one place, so the PDF and its tests agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NOT_REACHED = "NR"
DASH = "—"


def percent(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def interval(
    bounds: Sequence[float | None] | None, *, as_percent: bool = False, digits: int = 1
) -> str:
    if not bounds or (bounds[0] is None and bounds[1] is None):
        return DASH
    low, high = bounds

    def one(value: float | None) -> str:
        if value is None:
            return NOT_REACHED
        return f"{100 * value:.{digits}f}" if as_percent else f"{value:.{digits}f}"

    return f"{one(low)}–{one(high)}"


def rate(block: dict[str, Any] | None) -> str:
    """'11/21 (52.4%; 95% CI 29.8–74.3)'."""
    if not block:
        return DASH
    if block.get("proportion") is None:
        return f"{block['n']}/{block['N']}"
    return (
        f"{block['n']}/{block['N']} ({percent(block['proportion'])}; 95% CI "
        f"{interval(block['ci95'], as_percent=True)})"
    )


def p_value(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def months(value: float | None) -> str:
    return NOT_REACHED if value is None else f"{value:.1f}"


def number(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"
