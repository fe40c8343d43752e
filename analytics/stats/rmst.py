"""Restricted mean survival time (SAP.md section 14), as R's print(survfit(...), rmean = tau):
the area under the Kaplan-Meier curve from 0 to tau, and its standard error
sqrt(sum over event times t_j <= tau of A_j^2 d_j / (n_j (n_j - d_j))), A_j the area from t_j to
tau (survival's survmean). lifelines' restricted_mean_survival_time gives the area but not
this standard error (its variance is another estimator), so both are a few lines here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analytics.stats.plain import finite_or_none, interval
from analytics.stats.survival import Z_95


@dataclass(frozen=True)
class Rmst:
    rmst: float
    se: float


def rmst(time: Any, event: Any, tau: float) -> Rmst:
    """RMST up to tau with survival's standard error. Past the last time the curve keeps its
    last value (as R)."""
    frame = pd.DataFrame(
        {
            "time": pd.Series(time, dtype=float).to_numpy(),
            "event": pd.Series(event, dtype=float).to_numpy(),
        }
    ).dropna()
    durations, observed = frame["time"].to_numpy(), frame["event"].to_numpy()
    if durations.size == 0:
        raise ValueError("no patients")
    times, at_time = np.unique(durations, return_inverse=True)
    leaving = np.bincount(at_time, minlength=times.size).astype(float)
    deaths = np.bincount(at_time, weights=observed, minlength=times.size)
    at_risk = leaving[::-1].cumsum()[::-1]
    survival = np.cumprod(1 - deaths / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard_variance = np.where(
            at_risk - deaths == 0, 0.0, deaths / (at_risk * (at_risk - deaths))
        )
    keep = times <= tau
    step_times = np.concatenate([[0.0], times[keep], [tau]])
    step_survival = np.concatenate([[1.0], survival[keep]])
    rectangles = np.diff(step_times) * step_survival
    # The area from each kept time to tau.
    area_after = rectangles[::-1].cumsum()[::-1][1:]
    return Rmst(
        rmst=float(rectangles.sum()),
        se=float(np.sqrt((area_after**2 * hazard_variance[keep]).sum())),
    )


def rmst_compare(
    arms: dict[str, tuple[Any, Any]],
    tau: float,
    contrast: tuple[str, str] = ("car_t", "blinatumomab"),
) -> dict[str, Any]:
    """SAP 15's RMST block: per arm RMST and SE, and the difference first - second of
    `contrast` with its 95% CI and p (normal approximation, independent arms). An arm with no
    patients has None values."""
    block: dict[str, Any] = {}
    for arm, (time, event) in arms.items():
        if pd.Series(time, dtype=float).notna().sum() == 0:
            block[arm] = {"rmst": None, "se": None}
            continue
        value = rmst(time, event, tau)
        block[arm] = {"rmst": value.rmst, "se": value.se}
    first, second = (block.get(name, {"rmst": None, "se": None}) for name in contrast)
    block.update(difference=None, ci95=[None, None], p=None)
    if first["rmst"] is None or second["rmst"] is None:
        return block
    difference = first["rmst"] - second["rmst"]
    se = float(np.hypot(first["se"], second["se"]))
    block["difference"] = difference
    block["ci95"] = interval(difference - Z_95 * se, difference + Z_95 * se)
    if se > 0:  # no event before tau in either arm: no variance, no test
        block["p"] = finite_or_none(2 * stats.norm.sf(abs(difference / se)))
    return block
