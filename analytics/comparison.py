"""SAP.md sections 12-14 for one analysis set: competing risks (relapse and non-relapse
mortality, infections by day 100), the adjusted comparison of the arms (inverse probability of treatment weighting)
and the restricted mean survival time. The statistics are analytics.stats' (checked against R's
survival and cmprsk); this module only takes their columns from the treatments' frame
(analytics.frames) and names the blocks as SAP section 15 does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analytics.stats import competing, rmst, survival, weighting
from registry.domain.vocabulary import Arm

ARMS: tuple[str, str] = (Arm.BLINATUMOMAB.value, Arm.CAR_T.value)
CAUSES = {"relapse": 1, "nrm": 2}  # analytics.frames' pfs_cause
# SAP 13: the propensity model's covariates (a missing category is its own level).
PROPENSITY_COVARIATES = (
    "age",
    "sex",
    "ph_status",
    "disease_burden",
    "relapse_group",
    "prior_hsct",
)
RMST_MONTHS = (12, 24)

ENDPOINTS = ("pfs", "os")


def competing_risks(t: pd.DataFrame) -> dict[str, Any]:
    """SAP 12: per cause, each arm's cumulative incidence (Aalen-Johansen) at 12 and 24 months
    with its curve, Gray's test, and the Fine-Gray and cause-specific Cox HRs of CAR-T versus
    blinatumomab; time from day 0 in months, censored at the last contact or assessment."""
    months = survival.days_to_months(t["pfs_days"]).to_numpy()
    causes = t["pfs_cause"].to_numpy()
    arms = t["arm"].to_numpy()
    block: dict[str, Any] = {
        name: competing.cause_block(months, causes, arms, cause, arm_names=ARMS)
        for name, cause in CAUSES.items()
    }
    block["infection_by_day100"] = infection_by_day100(t)
    return block


INFECTION_WINDOW_DAYS = 100


def infection_by_day100(t: pd.DataFrame) -> dict[str, Any]:
    """SAP 12: each arm's cumulative incidence of a first infection (any on or after day 0)
    with death as the competing event, follow-up cut at day 100 (censored at the last
    contact before it). Each arm's CIF block has, beside the SAP's keys (at 12 and 24 months:
    null, past the follow-up), `at_day100` and `at_day100_ci95`."""
    infection = pd.to_numeric(t["infection_day"], errors="coerce").to_numpy(dtype=float)
    # OS time: the death, else the last contact (analytics.frames).
    seen = np.minimum(t["os_days"].to_numpy(dtype=float), INFECTION_WINDOW_DAYS)
    infected = ~np.isnan(infection) & (infection <= seen)
    died = (t["os_event"].to_numpy() == 1) & (t["os_days"].to_numpy() <= INFECTION_WINDOW_DAYS)
    days = np.where(infected, infection, seen)
    cause = np.where(infected, 1, np.where(died, 2, 0))
    months = survival.days_to_months(pd.Series(days)).to_numpy()
    arms = t["arm"].to_numpy()
    window = INFECTION_WINDOW_DAYS / survival.DAYS_PER_MONTH
    block = {}
    for arm in ARMS:
        cif = competing.cif_summary(
            months[arms == arm], cause[arms == arm], 1, rate_months=(*competing.RATE_MONTHS, window)
        )
        cif["at_day100"] = cif.pop(f"at_{window:g}m")
        cif["at_day100_ci95"] = cif.pop(f"at_{window:g}m_ci95")
        block[arm] = cif
    return block


def propensity_frame(t: pd.DataFrame) -> pd.DataFrame:
    """The propensity model's data: car_t (0/1) and SAP 13's covariates, categories as text
    (None where missing: its own level in the model)."""
    prior = t["prior_hsct"].map({True: "yes", False: "no"})
    return pd.DataFrame(
        {
            "car_t": (t["arm"] == Arm.CAR_T).astype(int),
            "age": pd.to_numeric(t["age"], errors="coerce").astype(float),
            "sex": t["sex"].astype(object),
            "ph_status": t["ph_status"].astype(object),
            "disease_burden": t["disease_burden"].astype(object),
            "relapse_group": t["relapse_group"].astype(object),
            "prior_hsct": prior.astype(object),
        },
        index=t.index,
    )


def adjusted(t: pd.DataFrame) -> dict[str, Any]:
    """SAP 13: the propensity model (weights' range, effective sample sizes, balance before and
    after weighting) and, with its stabilised weights, the weighted Cox HR (robust CI) and the
    weighted Kaplan-Meier survival at 12 and 24 months, for PFS and OS. When the model cannot
    be fitted every value is null and the reason is given."""
    fitted = weighting.propensity(propensity_frame(t), "car_t", PROPENSITY_COVARIATES)
    block: dict[str, Any] = {"propensity": weighting.propensity_summary(fitted, ARMS)}
    for endpoint in ENDPOINTS:
        if fitted.weights is None:
            block[endpoint] = {
                "cox_iptw": {"hr": None, "ci95": [None, None], "p": None, "reason": fitted.reason},
                "km_12m": dict.fromkeys(ARMS),
                "km_24m": dict.fromkeys(ARMS),
            }
            continue
        frame = pd.DataFrame(
            {
                "months": survival.days_to_months(t[f"{endpoint}_days"]).to_numpy(),
                "event": t[f"{endpoint}_event"].astype(int).to_numpy(),
                "arm": t["arm"].to_numpy(),
            },
            index=t.index,
        )
        block[endpoint] = weighting.adjusted_endpoint(
            frame, "months", "event", "arm", fitted.weights, arm_names=ARMS
        )
    return block


def restricted_mean(t: pd.DataFrame) -> dict[str, Any]:
    """SAP 14: RMST of PFS and OS up to 12 and 24 months per arm with its standard error, and
    the difference CAR-T minus blinatumomab with its 95% CI and p (months)."""
    block: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        months = survival.days_to_months(t[f"{endpoint}_days"])
        events = t[f"{endpoint}_event"].astype(int)
        arms = {
            arm: (months[t["arm"] == arm].to_numpy(), events[t["arm"] == arm].to_numpy())
            for arm in ARMS
        }
        block[endpoint] = {
            str(tau): rmst.rmst_compare(arms, tau, contrast=(ARMS[1], ARMS[0]))
            for tau in RMST_MONTHS
        }
    return block
