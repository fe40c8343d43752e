"""MRD negativity at 0.01% (10^-4) by an assay of sensitivity 0.01% or better (DOMAIN.md)."""

from __future__ import annotations

import pytest

from registry.domain.mrd import MRD_THRESHOLD_PCT, mrd_negative_cr, mrd_status
from registry.domain.vocabulary import MrdStatus, Response


def test_the_threshold_is_one_cell_in_ten_thousand_in_percent():
    assert pytest.approx(100 * 1e-4) == MRD_THRESHOLD_PCT


@pytest.mark.parametrize("sensitivity", [None, 0.0001, 0.001, 0.01, 0.02, 0.1, 1.0])
@pytest.mark.parametrize("result", [0.01, 0.0100000001, 0.05, 0.5, 12.0, 100.0])
def test_a_result_at_or_above_0_01_percent_is_positive_whatever_the_sensitivity(
    result, sensitivity
):
    status = mrd_status(result_pct=result, undetectable=False, sensitivity_pct=sensitivity)
    assert status == MrdStatus.POSITIVE


@pytest.mark.parametrize("sensitivity", [0.0001, 0.001, 0.005, 0.01, 0.0100000001, 0.00999999])
def test_undetectable_is_negative_when_the_assay_reaches_0_01_percent_or_better(sensitivity):
    status = mrd_status(result_pct=None, undetectable=True, sensitivity_pct=sensitivity)
    assert status == MrdStatus.NEGATIVE


@pytest.mark.parametrize("sensitivity", [0.0101, 0.02, 0.05, 0.1, 1.0])
def test_undetectable_by_a_less_sensitive_assay_is_not_evaluable(sensitivity):
    status = mrd_status(result_pct=None, undetectable=True, sensitivity_pct=sensitivity)
    assert status == MrdStatus.NOT_EVALUABLE


@pytest.mark.parametrize("result", [0.0, 0.001, 0.009, 0.0099])
@pytest.mark.parametrize(
    "sensitivity, status",
    [
        (0.001, MrdStatus.NEGATIVE),
        (0.01, MrdStatus.NEGATIVE),
        (0.02, MrdStatus.NOT_EVALUABLE),
        (0.1, MrdStatus.NOT_EVALUABLE),
        (None, MrdStatus.NOT_EVALUABLE),
    ],
)
def test_a_result_below_0_01_percent_is_negative_only_with_a_sensitive_enough_assay(
    result, sensitivity, status
):
    assert mrd_status(result_pct=result, undetectable=False, sensitivity_pct=sensitivity) == status


def test_undetectable_with_unknown_sensitivity_is_not_evaluable():
    status = mrd_status(result_pct=None, undetectable=True, sensitivity_pct=None)
    assert status == MrdStatus.NOT_EVALUABLE


@pytest.mark.parametrize(
    "result, status",
    [(0.009, MrdStatus.NEGATIVE), (0.01, MrdStatus.POSITIVE), (0.5, MrdStatus.POSITIVE)],
)
def test_result_0_009_is_negative_and_0_01_is_positive(result, status):
    assert mrd_status(result_pct=result, undetectable=False, sensitivity_pct=0.001) == status


@pytest.mark.parametrize("sensitivity", [None, 0.001, 0.1])
def test_no_result_and_not_undetectable_means_mrd_not_measured(sensitivity):
    assert mrd_status(result_pct=None, undetectable=False, sensitivity_pct=sensitivity) is None


@pytest.mark.parametrize(
    "response, status, negative_cr",
    [
        (Response.CR, MrdStatus.NEGATIVE, True),
        (Response.CRI, MrdStatus.NEGATIVE, True),
        ("cr", "negative", True),
        ("cri", "negative", True),
        (Response.CR, MrdStatus.POSITIVE, False),
        (Response.CR, MrdStatus.NOT_EVALUABLE, False),
        (Response.CRI, None, False),
        (Response.PR, MrdStatus.NEGATIVE, False),
        (Response.NR, MrdStatus.NEGATIVE, False),
        (Response.NOT_EVALUABLE, MrdStatus.NEGATIVE, False),
        (None, MrdStatus.NEGATIVE, False),
        (None, None, False),
    ],
)
def test_mrd_negative_cr_is_cr_or_cri_with_negative_mrd(response, status, negative_cr):
    assert mrd_negative_cr(response, status) is negative_cr
