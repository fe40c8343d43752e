"""Kaplan-Meier summaries, log-rank tests and Cox models (SAP.md section 6).

Conventions fixed by the SAP so that R, SAS or Stata give the same figures: Greenwood variance
with log(-log) intervals, median = first time S(t) <= 0.5, Efron ties in Cox models.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import multivariate_logrank_test

from analytics.stats.plain import finite_or_none, interval
from registry.domain.followup import DAYS_PER_MONTH  # pure, like this module: one definition

AT_RISK_MONTHS = (0, 3, 6, 9, 12, 18, 24)
RATE_MONTHS = (12, 24)

# lifelines stops Newton-Raphson on a Newton decrement below `precision` (default 1e-7), which
# leaves coefficients a few 1e-6 away from R's coxph; 1e-12 reproduces R to all printed digits.
COX_FIT_OPTIONS = {"precision": 1e-12}

# lifelines multiplies the step factors in log space, so a survival that is exactly 0.5 can come
# out as 0.5 + 1e-16 and its median would move to the next event time.
HALF_TOLERANCE = 1e-9

Times: TypeAlias = Sequence[float] | pd.Series | np.ndarray


def days_to_months(days: Times) -> pd.Series:
    return pd.Series(days, dtype=float) / DAYS_PER_MONTH


def km_summary(
    times: Times,
    events: Times,
    *,
    at_risk_months: Sequence[float] = AT_RISK_MONTHS,
    rate_months: Sequence[float] = RATE_MONTHS,
) -> dict[str, Any]:
    """The SAP's KM block for one group, with times already in months (or any one unit: the
    keys `rate_12m` and `at_risk["3"]` only name the values of `rate_months` and
    `at_risk_months`)."""
    durations, observed = _clean(times, events)
    summary: dict[str, Any] = {
        "n": int(durations.size),
        "events": int(observed.sum()),
        "median_months": None,
        "median_ci95": [None, None],
    }
    for month in rate_months:
        summary[f"rate_{month:g}m"] = None
        summary[f"rate_{month:g}m_ci95"] = [None, None]
    summary["at_risk"] = {f"{month:g}": int((durations >= month).sum()) for month in at_risk_months}
    summary["curve"] = []
    if durations.size == 0:
        summary["reason"] = "no patients"
        return summary

    fit = KaplanMeierFitter().fit(durations, observed)
    survival = fit.survival_function_.iloc[:, 0]
    bands = fit.confidence_interval_survival_function_
    lower, upper = bands.iloc[:, 0], bands.iloc[:, 1]

    summary["median_months"] = first_time_at_or_below_half(survival)
    # The lower band reaches one half first, so it gives the lower bound of the median.
    summary["median_ci95"] = [
        first_time_at_or_below_half(lower),
        first_time_at_or_below_half(upper),
    ]
    for month in rate_months:
        if (durations >= month).sum() == 0:
            continue  # nobody is still at risk: S(t) is not reported (SAP.md section 6)
        # Right-continuous step function: events at exactly `month` are counted.
        row = survival.index.searchsorted(month, side="right") - 1
        summary[f"rate_{month:g}m"] = finite_or_none(survival.iloc[row])
        summary[f"rate_{month:g}m_ci95"] = interval(lower.iloc[row], upper.iloc[row])
    summary["curve"] = [
        {
            "t": float(t),
            "s": finite_or_none(s),
            "lo": finite_or_none(lo),
            "hi": finite_or_none(hi),
        }
        for t, s, lo, hi in zip(survival.index, survival, lower, upper, strict=True)
    ]
    return summary


def km_summary_days(times_days: Times, events: Times, **options: Any) -> dict[str, Any]:
    """`km_summary` for times recorded in days from day 0, reported in months."""
    return km_summary(days_to_months(times_days), events, **options)


def first_time_at_or_below_half(curve: pd.Series) -> float | None:
    """The first time at which a survival curve is at or below 0.5; None if never reached."""
    reached = curve.to_numpy(dtype=float) <= 0.5 + HALF_TOLERANCE
    if not reached.any():
        return None
    return finite_or_none(curve.index[int(np.argmax(reached))])


def median_followup(times: Times, events: Times) -> float | None:
    """Median follow-up by reverse Kaplan-Meier: censoring is the event, events censor."""
    durations, observed = _clean(times, events)
    if durations.size == 0:
        return None
    fit = KaplanMeierFitter().fit(durations, 1 - observed)
    return first_time_at_or_below_half(fit.survival_function_.iloc[:, 0])


def logrank(times: Times, events: Times, groups: Sequence[Any] | pd.Series) -> dict[str, Any]:
    """Log-rank chi-square (k - 1 degrees of freedom) and p across any number of groups."""
    frame = pd.DataFrame(
        {
            "time": pd.Series(times, dtype=float).to_numpy(),
            "event": pd.Series(events, dtype=float).to_numpy(),
            "group": pd.Series(groups).to_numpy(),
        }
    ).dropna()
    if frame["group"].nunique() < 2:
        return {"chi2": None, "p": None, "reason": "fewer than two groups"}
    if frame["event"].sum() == 0:
        return {"chi2": None, "p": None, "reason": "no events"}
    result = multivariate_logrank_test(frame["time"], frame["group"], frame["event"])
    return {
        "chi2": finite_or_none(result.test_statistic),
        "p": finite_or_none(result.p_value),
        "df": int(result.degrees_of_freedom),
    }


def cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
) -> dict[str, Any]:
    """Cox model (Efron ties). The first covariate is the exposure: its HR, 95% CI, Wald p,
    coef and se are at the top level; every term is under `terms`. Text or categorical
    covariates are dummy-coded against their first level.

    A model that cannot be fitted (no events, an exposure that does not vary, no convergence,
    separation) gives None values and a `reason`.
    """
    if not covariates:
        raise ValueError("cox needs at least one covariate")
    exposure = covariates[0]
    frame = df[[duration_col, event_col, *covariates]].dropna()
    if not pd.api.types.is_numeric_dtype(frame[exposure]):
        raise ValueError(f"the exposure {exposure!r} must be numeric (for example 0/1)")
    design = design_matrix(frame, covariates)
    design = pd.concat([frame[[duration_col, event_col]].astype(float), design], axis=1)

    events = int(design[event_col].sum())
    if events == 0:
        return cox_not_estimable("no events")
    if design[exposure].nunique() < 2:
        return cox_not_estimable(f"{exposure} does not vary")
    reason = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            fit = CoxPHFitter().fit(
                design, duration_col, event_col, fit_options=dict(COX_FIT_OPTIONS)
            )
        except (ConvergenceError, np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
            reason = f"model could not be fitted: {first_sentence(error)}"
    reason = reason or convergence_problem(caught)
    if reason:
        return cox_not_estimable(reason)
    result = cox_terms(fit.summary, exposure)
    if result.get("reason"):
        return result
    result.update(
        n=len(design),
        events=events,
        concordance=finite_or_none(fit.concordance_index_),
        lr_chi2=finite_or_none(fit.log_likelihood_ratio_test().test_statistic),
    )
    return result


def design_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Numeric covariates as they are, others dummy-coded against their first level (levels
    absent from the data are left out rather than given an all-zero column)."""
    columns = []
    for name in covariates:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.CategoricalDtype
        ):
            columns.append(column.astype(float))
        else:
            if isinstance(column.dtype, pd.CategoricalDtype):
                column = column.cat.remove_unused_categories()
            columns.append(pd.get_dummies(column, prefix=name, drop_first=True, dtype=float))
    return pd.concat(columns, axis=1)


def cox_terms(summary: pd.DataFrame, exposure: str) -> dict[str, Any]:
    """Plain numbers from a lifelines summary, the exposure's at the top level."""
    terms: dict[str, dict[str, Any]] = {
        str(name): {
            "hr": finite_or_none(row["exp(coef)"]),
            "ci95": interval(row["exp(coef) lower 95%"], row["exp(coef) upper 95%"]),
            "p": finite_or_none(row["p"]),
            "coef": finite_or_none(row["coef"]),
            "se": finite_or_none(row["se(coef)"]),
        }
        for name, row in summary.iterrows()
    }
    main = terms[exposure]
    if main["hr"] is None or main["se"] is None or None in main["ci95"]:
        return cox_not_estimable("estimate is not finite (separation?)")
    return {**main, "terms": terms}


def cox_not_estimable(reason: str) -> dict[str, Any]:
    return {"hr": None, "ci95": [None, None], "p": None, "coef": None, "se": None, "reason": reason}


def convergence_problem(caught: list[warnings.WarningMessage]) -> str | None:
    """lifelines reports separation and non-convergence as warnings and still returns numbers;
    the SAP wants those reported as not estimable. Its warnings about low variance or correlation
    with the duration are only hints (they also fire when, say, one arm has no censored
    patient, which a Cox model handles) and do not by themselves invalidate the fit."""
    for warning in caught:
        message = str(warning.message)
        if issubclass(warning.category, ConvergenceWarning) and (
            "failed to converge" in message
            or "norm(delta) is still high" in message
            or "suspiciously close to 0" in message
        ):
            return f"model did not converge: {message.strip().splitlines()[0]}"
    return None


def _clean(times: Times, events: Times) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.DataFrame(
        {
            "time": pd.Series(times, dtype=float).to_numpy(),
            "event": pd.Series(events, dtype=float).to_numpy(),
        }
    ).dropna()
    return frame["time"].to_numpy(), frame["event"].to_numpy()


def first_sentence(error: Exception) -> str:
    """lifelines' errors end in long documentation links; the reason keeps the first sentence."""
    return str(error).strip().split(". ")[0].rstrip(".")
