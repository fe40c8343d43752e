"""Kaplan-Meier summaries, log-rank tests and Cox models (SAP.md section 6).

Conventions fixed by the SAP so that R, SAS or Stata give the same figures: Greenwood variance
with log(-log) intervals, median = first time S(t) <= 0.5, Efron ties in Cox models.

The estimators are numpy (issue #8: lifelines' fitters cost seconds on the whole registry) and
give lifelines' numbers: the same timeline, the same handling of empty risk sets and the same
Newton-Raphson for Cox models (analytics.stats.cox).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy import special, stats

from analytics.stats import cox as cox_fitting
from analytics.stats.concordance import concordance_index
from analytics.stats.plain import finite_or_none, interval
from registry.domain.followup import DAYS_PER_MONTH  # pure, like this module: one definition

logger = logging.getLogger(__name__)

AT_RISK_MONTHS = (0, 3, 6, 9, 12, 18, 24)
RATE_MONTHS = (12, 24)
Z_95 = float(stats.norm.ppf(0.975))

# The survival is a product of step factors computed in log space, so a survival that is
# exactly 0.5 can come out as 0.5 + 1e-16 and its median would move to the next event time.
HALF_TOLERANCE = 1e-9

Times: TypeAlias = Sequence[float] | pd.Series | np.ndarray


def chi_square_p(statistic: Any, df: int) -> np.ndarray:
    """scipy.stats.chi2.sf(statistic, df) for df >= 1, by the function it calls
    (special.chdtrc) without the distribution's argument checks, which cost 100 us a call
    (issue #16); 1 below 0, as sf."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(statistic) < 0, 1.0, special.chdtrc(df, statistic))


def days_to_months(days: Times) -> pd.Series:
    return pd.Series(days, dtype=float) / DAYS_PER_MONTH


def as_floats(values: Any) -> np.ndarray:
    """Values as a float array, a missing one (None, NaN, pd.NA) as NaN: what
    pd.Series(values, dtype=float) holds, without building the Series (issue #16: the fixed
    cost of pandas per analysis is what makes the small registries slower than R)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def complete_floats(*columns: Any) -> tuple[np.ndarray, ...]:
    """The columns as float arrays, less the rows where any of them is missing."""
    arrays = [as_floats(column) for column in columns]
    missing = np.isnan(arrays[0])
    for array in arrays[1:]:
        missing |= np.isnan(array)
    if missing.any():
        return tuple(array[~missing] for array in arrays)
    return tuple(arrays)


def complete_columns(
    df: pd.DataFrame | Mapping[str, pd.Series],
    names: Sequence[str],
    *,
    required: Sequence[str] | None = None,
) -> dict[str, pd.Series]:
    """The columns `names` of the rows where none of `required` (by default: of `names`) is
    missing, as df[names].dropna(subset=required) keeps them, without copying a frame whose
    rows are all complete."""
    columns = {name: df[name] for name in names}
    missing = np.zeros(len(columns[names[0]]), dtype=bool)
    for name in names if required is None else required:
        missing |= columns[name].isna().to_numpy()
    if missing.any():
        columns = {name: column[~missing] for name, column in columns.items()}
    return columns


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve with its log(-log) Greenwood 95% bounds, as lifelines'
    KaplanMeierFitter gives it: a step at the origin and at every distinct time (of an event,
    a censoring or an entry)."""

    times: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def kaplan_meier(
    durations: np.ndarray, observed: np.ndarray, entry: np.ndarray | None = None
) -> KaplanMeier:
    """Kaplan-Meier estimate; with `entry` (left truncation) a subject is at risk for the events
    after its entry time. A time at which nobody is at risk leaves the curve where it was."""
    durations = np.asarray(durations, dtype=float)
    dead = np.sort(durations[np.asarray(observed, dtype=bool)])
    if entry is None:
        entry = np.full(durations.shape, min(0.0, durations.min()))
    entry = np.sort(np.asarray(entry, dtype=float))
    times = np.unique(np.concatenate([entry, durations]))
    entered = np.searchsorted(entry, times, side="left")
    entered[0] = np.searchsorted(entry, times[0], side="right")  # as lifelines: at the origin
    at_risk = entered - np.searchsorted(np.sort(durations), times, side="left")
    deaths = np.searchsorted(dead, times, side="right") - np.searchsorted(dead, times, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.log(at_risk - deaths) - np.log(at_risk)
        greenwood = deaths / (at_risk * (at_risk - deaths).astype(float))
        greenwood[np.isposinf(greenwood)] = 0.0  # everybody at risk died: no more variance
        survival = np.exp(np.cumsum(np.where(np.isnan(steps), 0.0, steps)))
        variance = np.cumsum(np.where(np.isnan(greenwood), 0.0, greenwood))
        log_survival = np.log(survival)
        spread = Z_95 * np.sqrt(variance) / log_survival
        lower = np.exp(-np.exp(np.log(-log_survival) - spread))
        upper = np.exp(-np.exp(np.log(-log_survival) + spread))
    # Where S(t) = 1 the bounds are 0/0: lifelines (and R) make them 1.
    return KaplanMeier(
        times, survival, np.nan_to_num(lower, nan=1.0), np.nan_to_num(upper, nan=1.0)
    )


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
    durations, observed = complete_floats(times, events)
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

    curve = kaplan_meier(durations, observed)
    summary["median_months"] = first_time_at_or_below_half(curve.times, curve.survival)
    # The lower band reaches one half first, so it gives the lower bound of the median.
    summary["median_ci95"] = [
        first_time_at_or_below_half(curve.times, curve.lower),
        first_time_at_or_below_half(curve.times, curve.upper),
    ]
    for month in rate_months:
        if (durations >= month).sum() == 0:
            continue  # nobody is still at risk: S(t) is not reported (SAP.md section 6)
        # Right-continuous step function: events at exactly `month` are counted.
        row = curve.times.searchsorted(month, side="right") - 1
        summary[f"rate_{month:g}m"] = finite_or_none(curve.survival[row])
        summary[f"rate_{month:g}m_ci95"] = interval(curve.lower[row], curve.upper[row])
    summary["curve"] = [
        {
            "t": float(t),
            "s": finite_or_none(s),
            "lo": finite_or_none(lo),
            "hi": finite_or_none(hi),
        }
        for t, s, lo, hi in zip(
            curve.times.tolist(),
            curve.survival.tolist(),
            curve.lower.tolist(),
            curve.upper.tolist(),
            strict=True,
        )
    ]
    return summary


def km_summary_days(times_days: Times, events: Times, **options: Any) -> dict[str, Any]:
    """`km_summary` for times recorded in days from day 0, reported in months."""
    return km_summary(as_floats(times_days) / DAYS_PER_MONTH, events, **options)


def first_time_at_or_below_half(times: np.ndarray, curve: np.ndarray) -> float | None:
    """The first time at which a survival curve is at or below 0.5; None if never reached."""
    reached = curve <= 0.5 + HALF_TOLERANCE
    if not reached.any():
        return None
    return finite_or_none(times[int(np.argmax(reached))])


def median_followup(times: Times, events: Times) -> float | None:
    """Median follow-up by reverse Kaplan-Meier: censoring is the event, events censor."""
    durations, observed = complete_floats(times, events)
    if durations.size == 0:
        return None
    curve = kaplan_meier(durations, observed == 0)
    return first_time_at_or_below_half(curve.times, curve.survival)


def logrank(times: Times, events: Times, groups: Sequence[Any] | pd.Series) -> dict[str, Any]:
    """Log-rank chi-square (k - 1 degrees of freedom) and p across any number of groups."""
    time, event, group = complete_with_groups(times, events, groups)
    levels, group = group_codes(group)
    if levels.size < 2:
        return {"chi2": None, "p": None, "reason": "fewer than two groups"}
    if event.sum() == 0:
        return {"chi2": None, "p": None, "reason": "no events"}
    chi2, df = logrank_statistic(time, event, group)
    return {
        "chi2": finite_or_none(chi2),
        "p": finite_or_none(chi_square_p(chi2, df)),
        "df": df,
    }


def complete_with_groups(*columns: Any) -> tuple[np.ndarray, ...]:
    """The columns as float arrays and the last one (the groups) as it is, less the rows where
    any of them is missing."""
    *numbers, groups = columns
    group = groups.to_numpy() if isinstance(groups, pd.Series) else np.asarray(groups)
    arrays = [as_floats(column) for column in numbers]
    missing = pd.isna(group)
    for array in arrays:
        missing |= np.isnan(array)
    if missing.any():
        return (*(array[~missing] for array in arrays), group[~missing])
    return (*arrays, group)


def group_codes(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct groups and each row's number among them, as np.unique(group,
    return_inverse=True) gives them; by hashing, as sorting text (the arms) is slow."""
    codes, levels = pd.factorize(group, sort=True)
    return np.asarray(levels), codes


def logrank_statistic(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, int]:
    """The k-group log-rank chi-square and its degrees of freedom (groups numbered 0..k-1): at
    each distinct time, observed and expected events per group and their hypergeometric
    covariance, summed; the last group is left out of the quadratic form."""
    k = int(group.max()) + 1
    times, at_time = np.unique(time, return_inverse=True)
    cell = at_time * k + group
    leaving = np.bincount(cell, minlength=times.size * k).reshape(times.size, k).astype(float)
    dying = np.bincount(cell, weights=event, minlength=times.size * k).reshape(times.size, k)
    # At risk at each time: everybody minus those who left at earlier times.
    at_risk_by_group = leaving.sum(axis=0) - np.cumsum(leaving, axis=0) + leaving
    at_risk, deaths = at_risk_by_group.sum(axis=1), dying.sum(axis=1)
    expected = (at_risk_by_group * (deaths / at_risk)[:, None]).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = (at_risk - deaths) / (at_risk - 1)
    correction[~np.isfinite(correction)] = 1.0  # a single subject at risk
    weight = correction * deaths / at_risk**2
    covariance = -(at_risk_by_group * weight[:, None]).T @ at_risk_by_group
    covariance[np.diag_indices(k)] += (at_risk_by_group * (weight * at_risk)[:, None]).sum(axis=0)
    difference = (dying.sum(axis=0) - expected)[:-1]
    chi2 = difference @ np.linalg.pinv(covariance[:-1, :-1]) @ difference
    return float(chi2), k - 1


def cox(
    df: pd.DataFrame | Mapping[str, pd.Series],
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    *,
    concordance: bool = True,
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
    columns = complete_columns(df, [duration_col, event_col, *covariates])
    if not pd.api.types.is_numeric_dtype(columns[exposure]):
        raise ValueError(f"the exposure {exposure!r} must be numeric (for example 0/1)")
    return cox_of_design(
        design_columns(columns, covariates),
        columns[duration_col].to_numpy(dtype=float),
        columns[event_col].to_numpy(dtype=float),
        concordance=concordance,
    )


def cox_of_design(
    design: Design, durations: np.ndarray, observed: np.ndarray, *, concordance: bool = True
) -> dict[str, Any]:
    """`cox` on complete rows already coded: the first term is the exposure."""
    exposure = design.names[0]
    events = int(observed.sum())
    if events == 0:
        return cox_not_estimable("no events")
    if np.unique(design.x[:, 0]).size < 2:
        return cox_not_estimable(f"{exposure} does not vary")
    try:
        fit = cox_fitting.fit(design.x, design.names, durations, observed)
    except cox_fitting.NotEstimable as error:
        log_not_estimable(error, f"Cox model of {exposure}", design.names, len(design.x), events)
        return cox_not_estimable(str(error))
    result = cox_terms(fit, exposure)
    if result.get("reason"):
        return result
    result.update(
        n=len(design.x),
        events=events,
        concordance=None,
        lr_chi2=finite_or_none(2 * (fit.log_likelihood - fit.log_likelihood_null)),
    )
    if concordance:
        # Harrell's C of the fitted risk score (a higher score predicts a shorter time);
        # lifelines' count takes a second at 100,000 rows, so callers that show no C skip it.
        score = design.x @ fit.coef
        result["concordance"] = finite_or_none(concordance_index(durations, -score, observed))
    return result


@dataclass(frozen=True)
class Design:
    """A model's covariates as numbers (rows x terms) and the terms' names."""

    x: np.ndarray
    names: list[str]


def design_columns(
    frame: pd.DataFrame | Mapping[str, pd.Series], covariates: Sequence[str]
) -> Design:
    """Numeric covariates as they are, others dummy-coded against their first level (levels
    absent from the data are left out rather than given an all-zero column), named as
    pd.get_dummies names them (`relapse_group_late`)."""
    columns, names = [], []
    for name in covariates:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.CategoricalDtype
        ):
            columns.append(column.to_numpy(dtype=float))
            names.append(name)
            continue
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.cat.remove_unused_categories()
            codes, levels = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, levels = pd.factorize(column, sort=True)  # the levels get_dummies finds
        for code, level in enumerate(levels[1:], start=1):
            columns.append((codes == code).astype(float))
            names.append(f"{name}_{level}")
    # Rows x terms in column-major order, as DataFrame.to_numpy gives it: the sums over rows
    # then run in the same order, to the last bit.
    x = np.vstack(columns).T if columns else np.empty((len(frame[covariates[0]]), 0))
    return Design(x, names)


def design_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """`design_columns` as a frame with the rows' index."""
    design = design_columns(frame, covariates)
    return pd.DataFrame(design.x, columns=design.names, index=frame.index)


def cox_terms(fit: cox_fitting.CoxFit, exposure: str) -> dict[str, Any]:
    """HR, its 95% CI, Wald p, coef and se of every term, the exposure's at the top level."""
    with np.errstate(invalid="ignore", over="ignore"):
        se = np.sqrt(np.diag(fit.covariance))
        hr = np.exp(fit.coef)
        p = chi_square_p((fit.coef / se) ** 2, 1)
        lower, upper = hr * np.exp(-Z_95 * se), hr * np.exp(Z_95 * se)
    terms: dict[str, dict[str, Any]] = {
        name: {
            "hr": finite_or_none(hr[i]),
            "ci95": interval(lower[i], upper[i]),
            "p": finite_or_none(p[i]),
            "coef": finite_or_none(fit.coef[i]),
            "se": finite_or_none(se[i]),
        }
        for i, name in enumerate(fit.names)
    }
    main = terms[exposure]
    if main["hr"] is None or main["se"] is None or None in main["ci95"]:
        return cox_not_estimable("estimate is not finite (separation?)")
    return {**main, "terms": terms}


def log_not_estimable(
    error: cox_fitting.NotEstimable, model: str, covariates: Sequence[str], n: int, events: int
) -> None:
    """The numerical account of a model that could not be fitted goes to the log; readers see
    its reason, translated. Info, not a warning: it says something of the data, not of the
    registry's health."""
    logger.info(
        "%s (covariates %s; %d rows, %d events) not estimable: %s. %s",
        model,
        ", ".join(covariates),
        n,
        events,
        error,
        error.detail,
    )


def cox_not_estimable(reason: str) -> dict[str, Any]:
    return {"hr": None, "ci95": [None, None], "p": None, "coef": None, "se": None, "reason": reason}
