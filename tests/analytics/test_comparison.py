"""analytics.comparison on the registries a site can have on its first days: no patient, one
arm only, nobody with an event, one patient, everybody censored at day 0. Every block is
computed (null values with a reason), never an exception that would fail the snapshot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from django.utils import translation

from analytics import comparison, services
from analytics.comparison_tables import hematotoxicity_table, late_effects_table

COLUMNS = {
    "arm": object, "age": float, "sex": object, "ph_status": object, "disease_burden": object,
    "relapse_group": object, "prior_hsct": object, "pfs_days": float, "pfs_event": int,
    "pfs_cause": int, "os_days": float, "os_event": int, "infection_day": object,
}  # fmt: skip


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "age": 30.0, "sex": "F", "ph_status": "negative", "disease_burden": "morphologic",
        "relapse_group": "first_relapse", "prior_hsct": False, "pfs_days": 100.0,
        "pfs_event": 0, "pfs_cause": 0, "os_days": 100.0, "os_event": 0, "infection_day": None,
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
    assert set(output["competing_risks"]) == {"relapse", "nrm", "infection_by_day100"}
    assert set(output["rmst"]) == {"pfs", "os"} and set(output["rmst"]["os"]) == {"12", "24"}
    assert "NaN" not in text and "Infinity" not in text


def test_without_events_before_tau_the_rmst_difference_has_no_test():
    t = frame([{"arm": "car_t"}, {"arm": "blinatumomab", "pfs_days": 400.0, "os_days": 400.0}])
    block = comparison.restricted_mean(t)["os"]["12"]
    assert block["p"] is None and block["difference"] == pytest.approx(
        block["car_t"]["rmst"] - block["blinatumomab"]["rmst"]
    )
    assert np.isfinite(block["difference"])


# --- SAP 15: hematotoxicity (ICAHT derived from the lab series) ---------------------------------


def icaht_frame(grades: list[tuple[str, float | None, float | None]]) -> pd.DataFrame:
    """(arm, early grade, late grade) per treatment; None is not gradable. Nobody had IVIG or
    a persistence assessment."""
    frame = pd.DataFrame(grades, columns=["arm", "icaht_early_grade", "icaht_late_grade"])
    return frame.assign(ivig=False, car_persistence=None)


def test_icaht_counts_each_grade_and_the_not_gradable_per_arm():
    t = icaht_frame(
        [
            ("car_t", 4, 1),
            ("car_t", 3, None),
            ("car_t", 1, 0),
            ("car_t", None, None),
            ("blinatumomab", 0, 0),
            ("blinatumomab", 1, None),
        ]
    )
    block = services.hematotoxicity(t)
    early = block["icaht_early"]["grade_distribution"]
    assert early["car_t"] == {"0": 0, "1": 1, "2": 0, "3": 1, "4": 1, "not_gradable": 1}
    assert early["blinatumomab"] == {"0": 1, "1": 1, "2": 0, "3": 0, "4": 0, "not_gradable": 0}
    late = block["icaht_late"]["grade_distribution"]
    assert late["car_t"]["not_gradable"] == 2 and late["blinatumomab"]["not_gradable"] == 1


def test_the_severe_icaht_rate_is_over_the_gradable_treatments_with_fishers_p():
    t = icaht_frame([("car_t", 3, None)] * 6 + [("car_t", 1, 0)] * 4 + [("car_t", None, 0)] * 5
                    + [("blinatumomab", 0, 0)] * 9 + [("blinatumomab", 3, 0)])  # fmt: skip
    severe = services.hematotoxicity(t)["icaht_early"]["severe"]
    assert (severe["car_t"]["n"], severe["car_t"]["N"]) == (6, 10)
    assert (severe["blinatumomab"]["n"], severe["blinatumomab"]["N"]) == (1, 10)
    # R: fisher.test(matrix(c(1, 9, 6, 4), 2, byrow = TRUE))$p.value
    assert severe["p_fisher"] == pytest.approx(0.05728, abs=1e-5)


def test_with_no_gradable_series_the_severe_rate_has_no_p():
    t = icaht_frame([("car_t", None, None), ("blinatumomab", None, None)])
    severe = services.hematotoxicity(t)["icaht_late"]["severe"]
    assert severe["car_t"]["N"] == 0 and severe["p_fisher"] is None
    json.dumps(services.json_safe(severe), allow_nan=False)


def test_the_icaht_table_prints_both_phases_for_both_arms_in_either_language():
    t = icaht_frame([("car_t", 3, 0), ("car_t", None, 1), ("blinatumomab", 0, 0)])
    output = {"hematotoxicity": services.hematotoxicity(t), "competing_risks": {}}
    table = hematotoxicity_table(output)
    assert len(late_effects_table(output).rows) == 2  # IVIG and persistence; no infection block
    assert len(table.rows) == 4 and all(len(row) == len(table.header) for row in table.rows)
    car_t_early = table.rows[1]
    assert car_t_early[2:8] == ["0", "0", "0", "1", "0", "1"]
    assert car_t_early[8].startswith("1/1 (100.0%")
    with translation.override("zh-hans"):
        chinese = hematotoxicity_table(output)
    assert chinese.caption != table.caption and "无法分级" in chinese.header


# --- issue #17: infections by day 100 (death competing), IVIG, CAR persistence ------------------


def infection_frame(rows: list[tuple[str, float | None, float, int]]) -> pd.DataFrame:
    """(arm, first infection day or None, OS days, OS event) per patient."""
    return pd.DataFrame(rows, columns=["arm", "infection_day", "os_days", "os_event"])


def test_infections_by_day100_count_a_death_before_an_infection_as_competing():
    t = infection_frame(
        [
            ("car_t", 10, 400, 0),  # infected on day 10
            ("car_t", None, 50, 1),  # died on day 50, never infected: competing
            ("car_t", 150, 400, 0),  # infected after day 100: censored at day 100
            ("car_t", 60, 40, 1),  # died on day 40, an infection dated later cannot count
            ("blinatumomab", None, 30, 0),  # last seen on day 30: censored then
        ]
    )
    block = comparison.infection_by_day100(t)
    car_t = block["car_t"]
    assert (car_t["n"], car_t["events"], car_t["competing"]) == (4, 1, 2)
    # Aalen-Johansen: S = 1 before day 10, the infection takes 1/4 of the 4 at risk.
    assert car_t["at_day100"] == pytest.approx(0.25)
    assert car_t["at_day100_ci95"][0] < 0.25 < car_t["at_day100_ci95"][1]
    assert car_t["at_12m"] is None  # past the follow-up, cut at day 100
    assert block["blinatumomab"]["events"] == 0


def test_ivig_use_is_over_every_treatment_and_persistence_over_those_assessed():
    t = icaht_frame([("car_t", 1, 0)] * 4 + [("blinatumomab", 0, 0)] * 2)
    t["ivig"] = [True, True, False, False, False, False]
    t["car_persistence"] = [True, False, None, None, None, None]
    block = services.hematotoxicity(t)
    assert (block["ivig"]["car_t"]["n"], block["ivig"]["car_t"]["N"]) == (2, 4)
    assert (block["ivig"]["blinatumomab"]["n"], block["ivig"]["blinatumomab"]["N"]) == (0, 2)
    persistence = block["car_persistence"]
    assert (persistence["car_t"]["n"], persistence["car_t"]["N"]) == (1, 2)
    assert persistence["blinatumomab"]["N"] == 0 and persistence["p_fisher"] is None
