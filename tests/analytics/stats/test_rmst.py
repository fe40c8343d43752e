"""Restricted mean survival time against R's print(survfit(...), rmean = tau) (values made by
r/competing_iptw_rmst.R, kept in r/reference.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analytics.stats.rmst import rmst, rmst_compare

HERE = Path(__file__).parent
R = json.loads((HERE / "r" / "reference.json").read_text())["rmst"]
DIFFERENCE = json.loads((HERE / "r" / "reference.json").read_text())["rmst_difference_lung_365"]
REL = 1e-4


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / "lung.csv")


@pytest.fixture(scope="module")
def aml() -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / "aml.csv")


@pytest.mark.parametrize(
    "key, sex, tau",
    [
        ("lung_male_365", 1, 365),
        ("lung_female_365", 2, 365),
        ("lung_male_730", 1, 730),
        ("lung_female_730", 2, 730),
    ],
)
def test_lung_rmst_and_its_standard_error_match_survfit(lung, key, sex, tau):
    rows = lung[lung["sex"] == sex]
    result = rmst(rows["time"], rows["event"], tau)
    assert result.rmst == pytest.approx(R[key]["rmean"], rel=REL)
    assert result.se == pytest.approx(R[key]["se"], rel=REL)


@pytest.mark.parametrize(
    "key, group, tau",
    [
        ("aml_maintained_24", "Maintained", 24),
        ("aml_nonmaintained_24", "Nonmaintained", 24),
        # past the last time the curve keeps its last value
        ("aml_maintained_200", "Maintained", 200),
    ],
)
def test_aml_rmst_with_ties_and_a_tau_past_the_data_matches_survfit(aml, key, group, tau):
    rows = aml[aml["x"] == group]
    result = rmst(rows["time"], rows["status"], tau)
    assert result.rmst == pytest.approx(R[key]["rmean"], rel=REL)
    assert result.se == pytest.approx(R[key]["se"], rel=REL)


def test_rmst_difference_has_a_normal_interval_and_p(lung):
    female, male = lung[lung["sex"] == 2], lung[lung["sex"] == 1]
    block = rmst_compare(
        {"car_t": (female["time"], female["event"]), "blinatumomab": (male["time"], male["event"])},
        365,
    )
    assert block["car_t"]["rmst"] == pytest.approx(R["lung_female_365"]["rmean"], rel=REL)
    assert block["blinatumomab"]["se"] == pytest.approx(R["lung_male_365"]["se"], rel=REL)
    assert block["difference"] == pytest.approx(DIFFERENCE["difference"], rel=REL)
    assert block["ci95"] == [
        pytest.approx(DIFFERENCE["lower"], rel=REL),
        pytest.approx(DIFFERENCE["upper"], rel=REL),
    ]
    assert block["p"] == pytest.approx(DIFFERENCE["p"], rel=REL)
    json.dumps(block, allow_nan=False)


def test_rmst_without_events_is_tau_with_no_error():
    result = rmst([10, 20, 30], [0, 0, 0], 15)
    assert result.rmst == 15 and result.se == 0


def test_rmst_difference_with_an_empty_arm_is_null(lung):
    block = rmst_compare({"car_t": ([], []), "blinatumomab": (lung["time"], lung["event"])}, 365)
    assert block["car_t"] == {"rmst": None, "se": None}
    assert block["difference"] is None and block["ci95"] == [None, None] and block["p"] is None
    json.dumps(block, allow_nan=False)
