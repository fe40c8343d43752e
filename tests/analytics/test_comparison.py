"""analytics.comparison on the registries a site can have on its first days: no patient, one
arm only, nobody with an event, one patient, everybody censored at day 0. Every block is
computed (null values with a reason), never an exception that would fail the snapshot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analytics import comparison, services

COLUMNS = {
    "arm": object, "age": float, "sex": object, "ph_status": object, "disease_burden": object,
    "relapse_group": object, "prior_hsct": object, "pfs_days": float, "pfs_event": int,
    "pfs_cause": int, "os_days": float, "os_event": int,
}  # fmt: skip


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "age": 30.0, "sex": "F", "ph_status": "negative", "disease_burden": "morphologic",
        "relapse_group": "first_relapse", "prior_hsct": False, "pfs_days": 100.0,
        "pfs_event": 0, "pfs_cause": 0, "os_days": 100.0, "os_event": 0,
    }  # fmt: skip
    data = pd.DataFrame([base | row for row in rows], columns=list(COLUMNS))
    return data.astype({k: v for k, v in COLUMNS.items() if v is not object})


def event(arm: str, cause: int, days: float) -> dict:
    return {"arm": arm, "pfs_days": days, "pfs_event": 1, "pfs_cause": cause,
            "os_days": days, "os_event": int(cause == 2)}  # fmt: skip


CASES = {
    "no patient": [],
    "one patient": [{"arm": "car_t"}],
    "one arm only": [event("car_t", 1, 30), event("car_t", 2, 60), {"arm": "car_t"}],
    "nobody with an event": [{"arm": "car_t"}, {"arm": "blinatumomab"}] * 3,
    "everybody censored at day 0": [{"arm": a, "pfs_days": 0.0, "os_days": 0.0} for a in ("car_t", "blinatumomab")] * 2,
    "no relapse, only deaths": [event("car_t", 2, 40), event("blinatumomab", 2, 50), {"arm": "car_t"}],
    "no death": [event("car_t", 1, 40), event("blinatumomab", 1, 50), {"arm": "blinatumomab"}],
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_every_block_is_computed_on_a_small_or_empty_registry(case):
    t = frame(CASES[case])
    output = {
        "competing_risks": comparison.competing_risks(t),
        "adjusted": comparison.adjusted(t),
        "rmst": comparison.restricted_mean(t),
    }
    text = json.dumps(services.json_safe(output), allow_nan=False)
    assert set(output["competing_risks"]) == {"relapse", "nrm"}
    assert set(output["rmst"]) == {"pfs", "os"} and set(output["rmst"]["os"]) == {"12", "24"}
    assert "NaN" not in text and "Infinity" not in text


def test_without_events_before_tau_the_rmst_difference_has_no_test():
    t = frame([{"arm": "car_t"}, {"arm": "blinatumomab", "pfs_days": 400.0, "os_days": 400.0}])
    block = comparison.restricted_mean(t)["os"]["12"]
    assert block["p"] is None and block["difference"] == pytest.approx(
        block["car_t"]["rmst"] - block["blinatumomab"]["rmst"]
    )
    assert np.isfinite(block["difference"])
