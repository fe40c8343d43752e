"""MRD negativity of a response assessment (DOMAIN.md "MRD negativity").

MRD-negative means below 0.01% (10^-4) of nucleated marrow cells by an assay whose sensitivity
is 0.01% or better; an assay less sensitive than that can only give "not evaluable", never
"negative", so that results from flow, PCR and NGS laboratories are compared at one level.
"""

from __future__ import annotations

import math

from registry.domain.vocabulary import MrdStatus, Response

MRD_THRESHOLD_PCT = 0.01  # 10^-4 of nucleated cells

# Percentages are typed with a few decimals; a value stored as 0.0100000001 was typed 0.01.
RELATIVE_TOLERANCE = 1e-6

COMPLETE_RESPONSES = (Response.CR, Response.CRI)


def at_threshold(percent: float) -> bool:
    return math.isclose(percent, MRD_THRESHOLD_PCT, rel_tol=RELATIVE_TOLERANCE)


def below_threshold(percent: float) -> bool:
    return percent < MRD_THRESHOLD_PCT and not at_threshold(percent)


def mrd_status(
    *, result_pct: float | None, undetectable: bool, sensitivity_pct: float | None
) -> MrdStatus | None:
    """Status of one MRD measurement, or None when no MRD was measured.

    A result at or above 0.01% is positive whatever the sensitivity. Anything lower (or
    undetectable) is negative only when the assay's sensitivity is known and 0.01% or better
    (a smaller number); otherwise it is not evaluable.
    """
    if result_pct is not None and not below_threshold(result_pct):
        return MrdStatus.POSITIVE
    if result_pct is None and not undetectable:
        return None
    if sensitivity_pct is None:
        return MrdStatus.NOT_EVALUABLE
    if below_threshold(sensitivity_pct) or at_threshold(sensitivity_pct):
        return MrdStatus.NEGATIVE
    return MrdStatus.NOT_EVALUABLE


def mrd_negative_cr(response: Response | str | None, status: MrdStatus | str | None) -> bool:
    """CR or CRi with MRD negative at the same assessment (DOMAIN.md)."""
    return response in COMPLETE_RESPONSES and status == MrdStatus.NEGATIVE
