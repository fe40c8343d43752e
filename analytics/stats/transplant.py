"""Transplant after treatment: naive, time-dependent, Mantel-Byar, landmark and Simon-Makuch
analyses (SAP.md section 7).

Input: one row per patient with `time` (days from day 0 to the event or censoring), `event`
(0/1), `tx_day` (day of the transplant, NaN if none) and any covariates (for example `arm`).
A transplant after the event or censoring time does not change the patient's exposure; a
transplant on the day of the event or censoring moves half a day earlier, so that the patient is
at risk as transplanted when the event happens; a transplant on or before day 0 counts from
the start.

The time-dependent Cox model, the Mantel-Byar test and the Simon-Makuch curves take the
counting-process rows of `counting_process`, built once per frame (issue #8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analytics.stats import cox as cox_fitting
from analytics.stats.plain import finite_or_none
from analytics.stats.survival import (
    DAYS_PER_MONTH,
    chi_square_p,
    complete_columns,
    cox_not_estimable,
    cox_terms,
    design_columns,
    kaplan_meier,
    log_not_estimable,
)

LANDMARK_DAYS = 90
SAME_DAY_SHIFT = 0.5
# A counting-process interval must have positive length, so a day-0 event or censoring is
# placed half a day after day 0 (as is usual with R's coxph).
DAY_ZERO_STOP = 0.5


def naive_logrank(df: pd.DataFrame, *, strata: str | None = None) -> dict[str, Any]:
    """Log-rank from day 0 of ever transplanted versus never (as the study reported it; biased
    by immortal time). With `strata` (for example "arm"), the stratified log-rank."""
    ever = df["tx_day"].notna()
    rows = pd.DataFrame(
        {
            "start": 0.0,
            "stop": df["time"].astype(float),
            "event": df["event"].astype(int),
            "transplanted": ever.astype(int),
        },
        index=df.index,
    )
    if strata:
        rows["stratum"] = df[strata]
    result = counting_process_logrank(rows, strata="stratum" if strata else None)
    return {
        **result,
        "n_transplanted": int(ever.sum()),
        "n_not": int((~ever).sum()),
    }


def counting_process(df: pd.DataFrame, covariates: Sequence[str] = ()) -> pd.DataFrame:
    """Counting-process rows `id, start, stop, event, transplanted` (plus covariates): one row
    before the transplant and one after it. Patients without a time or event are left out."""
    complete = df["time"].notna().to_numpy() & df["event"].notna().to_numpy()
    if not complete.all():
        df = df[complete]
    time = df["time"].to_numpy(dtype=float)
    stop = np.where(time > 0, time, DAY_ZERO_STOP)
    event = df["event"].to_numpy(dtype=int)
    tx_day = pd.to_numeric(df["tx_day"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):  # NaN: not transplanted
        transplanted = tx_day <= time
    at_zero = transplanted & (tx_day <= 0)
    switched = transplanted & ~at_zero
    # A transplant on the day of the event moves half a day earlier (SAP.md section 7).
    switch = np.where(tx_day != time, tx_day, np.maximum(time - SAME_DAY_SHIFT, time / 2))
    # Patients never transplanted before their event or censoring, or transplanted on day 0,
    # give one row; the others a row before the transplant and a row after it.
    patient = np.repeat(np.arange(len(df)), 1 + switched)
    after = np.zeros(patient.size, dtype=bool)
    after[np.cumsum(1 + switched)[switched] - 1] = True
    before = switched[patient] & ~after
    rows = pd.DataFrame(
        {
            "id": df.index[patient],
            "start": np.where(after, switch[patient], 0.0),
            "stop": np.where(before, switch[patient], stop[patient]),
            "event": np.where(before, 0, event[patient]),
            "transplanted": (after | at_zero[patient]).astype(int),
        }
    )
    for name in covariates:
        rows[name] = df[name].to_numpy()[patient]
    return rows


def time_dependent_cox(rows: pd.DataFrame, covariates: Sequence[str] = ()) -> dict[str, Any]:
    """Cox model with transplant as a time-varying covariate (Efron ties), on counting-process
    rows: HR of being transplanted, 95% CI, Wald p; `covariates` (for example "arm", carried on
    the rows) adjust it."""
    columns = complete_columns(
        rows, ["id", "start", "stop", "event", "transplanted", *covariates], required=covariates
    )
    transplanted = columns["transplanted"].to_numpy()
    event = columns["event"].to_numpy(dtype=float)
    n_transplanted = int(np.unique(columns["id"].to_numpy()[transplanted == 1]).size)
    if n_transplanted == 0:
        return {**cox_not_estimable("no patient transplanted"), "n_transplanted": 0}
    if event.sum() == 0:
        return {**cox_not_estimable("no events"), "n_transplanted": n_transplanted}
    if (transplanted == transplanted[0]).all():
        return {
            **cox_not_estimable("every patient transplanted from day 0"),
            "n_transplanted": n_transplanted,
        }
    design = design_columns(columns, ["transplanted", *covariates])
    try:
        fit = cox_fitting.fit(
            design.x,
            design.names,
            columns["stop"].to_numpy(dtype=float),
            event,
            columns["start"].to_numpy(dtype=float),
        )
    except cox_fitting.NotEstimable as error:
        log_not_estimable(
            error,
            "Time-dependent Cox model of transplant",
            design.names,
            len(design.x),
            int(event.sum()),
        )
        return {**cox_not_estimable(str(error)), "n_transplanted": n_transplanted}
    return {**cox_terms(fit, "transplanted"), "n_transplanted": n_transplanted}


def mantel_byar(rows: pd.DataFrame, *, strata: str | None = None) -> dict[str, Any]:
    """Mantel-Byar test on counting-process rows: the log-rank test in which each patient
    counts, at each event time, in the group (transplanted or not) they are in at that time."""
    result = counting_process_logrank(rows, strata=strata)
    return {**result, "n_transplanted": int(rows.loc[rows["transplanted"] == 1, "id"].nunique())}


def landmark(
    df: pd.DataFrame, days: int = LANDMARK_DAYS, *, strata: str | None = None
) -> dict[str, Any]:
    """Landmark analysis: patients still at risk after `days` (no event, follow-up beyond it),
    grouped by a transplant on or before the landmark, time counted from the landmark."""
    at_risk = df[df["time"] > days]
    transplanted = at_risk["tx_day"].notna() & (at_risk["tx_day"] <= days)
    rows = pd.DataFrame(
        {
            "start": 0.0,
            "stop": at_risk["time"].astype(float) - days,
            "event": at_risk["event"].astype(int),
            "transplanted": transplanted.astype(int),
        },
        index=at_risk.index,
    )
    if strata:
        rows["stratum"] = at_risk[strata]
    result = counting_process_logrank(rows, strata="stratum" if strata else None)
    return {
        "days": int(days),
        "n_transplanted": int(transplanted.sum()),
        "n_not": int((~transplanted).sum()),
        **result,
    }


def simon_makuch(rows: pd.DataFrame) -> dict[str, Any]:
    """Simon-Makuch curves for plots, from counting-process rows: Kaplan-Meier by current
    transplant status, the transplanted curve left-truncated at the transplant. Times `t` in
    months."""
    curves: dict[str, Any] = {}
    for status, label in ((0, "not_transplanted"), (1, "transplanted")):
        group = rows[rows["transplanted"] == status]
        if group.empty:
            curves[label] = None
            curves["reason"] = f"no patient-time {label.replace('_', ' ')}"
            continue
        curve = kaplan_meier(
            group["stop"].to_numpy(dtype=float) / DAYS_PER_MONTH,
            group["event"].to_numpy(dtype=float),
            entry=group["start"].to_numpy(dtype=float) / DAYS_PER_MONTH,
        )
        curves[label] = [
            {"t": t, "s": finite_or_none(s)}
            for t, s in zip(curve.times.tolist(), curve.survival.tolist(), strict=True)
        ]
    return curves


def counting_process_logrank(rows: pd.DataFrame, *, strata: str | None = None) -> dict[str, Any]:
    """Two-group (stratified) log-rank over counting-process rows `start, stop, event,
    transplanted`: at each event time, the observed and expected events in the transplanted
    group and the hypergeometric variance, summed over times (and strata).

    lifelines has neither a stratified log-rank nor a Mantel-Byar test (R_REFERENCE.md).
    """
    if rows.empty or rows["event"].sum() == 0:
        return _test_not_estimable("no events")
    if rows["transplanted"].nunique() < 2:
        return _test_not_estimable("only one group")
    rows = rows[rows["stop"].notna()]
    observed = expected = variance = 0.0
    groups = rows.groupby(strata, sort=False) if strata else [(None, rows)]
    for _, stratum in groups:
        o, e, v = observed_expected_variance(
            stratum["start"].to_numpy(dtype=float),
            stratum["stop"].to_numpy(dtype=float),
            stratum["event"].to_numpy(dtype=int) == 1,
            stratum["transplanted"].to_numpy(dtype=int) == 1,
        )
        observed, expected, variance = observed + o, expected + e, variance + v
    if variance <= 0:
        return _test_not_estimable("no variance: no event while both groups were at risk")
    chi2 = (observed - expected) ** 2 / variance
    return {
        "chi2": finite_or_none(chi2),
        "p": finite_or_none(chi_square_p(chi2, 1)),
        "observed": finite_or_none(observed),
        "expected": finite_or_none(expected),
    }


def observed_expected_variance(
    start: np.ndarray, stop: np.ndarray, event: np.ndarray, exposed: np.ndarray
) -> tuple[float, float, float]:
    """Observed and expected events of the exposed rows and the hypergeometric variance, summed
    over the event times. A row is at risk at t if it entered before t (or on day 0) and was
    not yet out before t; rows have start < stop, or start 0."""
    times = np.unique(stop[event])

    def count(values: np.ndarray, *, at_or_after: np.ndarray) -> np.ndarray:
        ordered = np.sort(values)
        return ordered.size - np.searchsorted(ordered, at_or_after, side="left")

    def at_risk(rows: np.ndarray) -> np.ndarray:
        late = start[rows & (start != 0)]
        return count(stop[rows], at_or_after=times) - count(late, at_or_after=times)

    def dying(rows: np.ndarray) -> np.ndarray:
        dead = np.sort(stop[rows & event])
        return np.searchsorted(dead, times, "right") - np.searchsorted(dead, times, "left")

    everyone = np.ones(stop.size, dtype=bool)
    n, n1 = at_risk(everyone).astype(float), at_risk(exposed)
    d, d1 = dying(everyone), dying(exposed)
    share = n1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(n > 1, d * share * (1 - share) * (n - d) / (n - 1), 0.0)
    return float(d1.sum()), float((d * share).sum()), float(spread.sum())


def _test_not_estimable(reason: str) -> dict[str, Any]:
    return {"chi2": None, "p": None, "reason": reason}
