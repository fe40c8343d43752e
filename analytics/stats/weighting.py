"""Inverse probability of treatment weighting (SAP.md section 13): the logistic propensity
model (statsmodels, as R's glm(binomial)), stabilised ATE weights, the balance of the
covariates before and after weighting, the weighted Kaplan-Meier (as survfit(weights = w)) and
the weighted Cox model with the robust variance (as coxph(weights = w, robust = TRUE)).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from analytics.stats import cox as cox_fitting
from analytics.stats import survival
from analytics.stats.plain import finite_or_none

# The level a missing category becomes (SAP.md section 13: "a missing category is its own
# level").
MISSING = "missing"
# A fitted probability this close to 0 or 1 means (quasi-)separation: R's glm warns "fitted
# probabilities numerically 0 or 1 occurred" at 10 * machine epsilon; this is wider, as a
# weight of 1e8 is already no estimate.
SEPARATION = 1e-8

SEPARATED = "propensity model could not be fitted (separation)"
ONE_ARM = "only one arm"


@dataclass(frozen=True)
class Propensity:
    """The propensity scores and stabilised weights of the rows used (index of the input),
    or a reason; `covariates` is the model's frame (categories with their missing level)."""

    scores: pd.Series | None
    weights: pd.Series | None
    treated: pd.Series
    covariates: pd.DataFrame
    reason: str | None = None
    coefficients: dict[str, float] = field(default_factory=dict)


def propensity(df: pd.DataFrame, treatment_col: str, covariates: Sequence[str]) -> Propensity:
    """Logistic regression of the 0/1 treatment on the covariates (numbers as they are, other
    columns dummy-coded against their first level, a missing category its own level; rows with
    a missing number are left out), and the stabilised ATE weights P(treated) / ps for the
    treated, P(untreated) / (1 - ps) for the others.

    Not estimable (scores and weights None, a reason): one arm only, a covariate level present
    in one arm only, separation or no convergence.
    """
    columns = {treatment_col: df[treatment_col]}
    for name in covariates:
        column = df[name]
        columns[name] = column if _is_number(column) else _levels_as_text(column)
    columns = survival.complete_columns(columns, [treatment_col, *covariates])
    treated = columns[treatment_col].astype(int)
    model_frame = pd.DataFrame({name: columns[name] for name in covariates}, index=treated.index)
    result = Propensity(None, None, treated, model_frame)
    if treated.nunique() < 2:
        return replace(result, reason=ONE_ARM)
    is_treated = treated.to_numpy() == 1
    for name in covariates:
        if _is_number(columns[name]):
            continue
        codes, levels = pd.factorize(columns[name], sort=True)
        size = np.bincount(codes, minlength=levels.size)
        treated_size = np.bincount(codes, weights=is_treated, minlength=levels.size)
        lonely = (treated_size == 0) | (treated_size == size)
        if lonely.any():
            return replace(
                result, reason=f"{name} = {levels[np.argmax(lonely)]} is present in one arm only"
            )
    # sm.add_constant's design (the constant first, rows x terms column-major as it passes the
    # frame on), without its checks of every column.
    terms = survival.design_columns(columns, covariates)
    design = np.vstack([np.ones(len(treated)), terms.x.T]).T
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            # Newton's method on the logistic likelihood (the estimate of R's glm, whose IRLS
            # is the same iteration); statsmodels' GLM solves each IRLS step by an SVD, ten
            # times slower on the whole registry.
            fit = sm.Logit(treated.to_numpy(dtype=float), design).fit(
                method="newton", maxiter=100, tol=1e-10, disp=False
            )
        except (PerfectSeparationWarning, np.linalg.LinAlgError, ValueError):
            return replace(result, reason=SEPARATED)
    scores = pd.Series(np.asarray(fit.predict(design), dtype=float), index=treated.index)
    converged = bool(fit.mle_retvals.get("converged", False))
    if not converged or ((scores < SEPARATION) | (scores > 1 - SEPARATION)).any():
        return replace(result, reason=SEPARATED)
    share = treated.mean()
    weights = pd.Series(
        np.where(treated == 1, share / scores, (1 - share) / (1 - scores)), index=treated.index
    )
    return replace(
        result,
        scores=scores,
        weights=weights,
        coefficients={
            name: float(value)
            for name, value in zip(["const", *terms.names], fit.params, strict=True)
        },
    )


def effective_sample_size(weights: Sequence[float] | pd.Series | np.ndarray) -> float | None:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return None
    return finite_or_none(w.sum() ** 2 / (w**2).sum())


def balance(
    covariates: pd.DataFrame, treated: pd.Series, weights: pd.Series
) -> list[dict[str, Any]]:
    """Standardised mean differences (treated - untreated) per covariate level, before and
    after weighting, over the same denominator sqrt((s1^2 + s0^2) / 2) of the unweighted
    sample standard deviations (n - 1); weighted means with the weights normalised within each
    arm. A number is one row (level None); a category has a row for each of its levels."""
    is_treated = treated.to_numpy() == 1
    w = weights.reindex(covariates.index).to_numpy(dtype=float)
    rows = []
    for name in covariates.columns:
        column = covariates[name]
        indicators: list[tuple[str | None, np.ndarray]]
        if _is_number(column):
            indicators = [(None, column.to_numpy(dtype=float))]
        else:
            values = column.to_numpy()
            indicators = [
                (str(level), (values == level).astype(float))
                for level in sorted(column.unique(), key=str)
            ]
        for level, values in indicators:
            treated_values, other_values = values[is_treated], values[~is_treated]
            spread = np.sqrt((treated_values.var(ddof=1) + other_values.var(ddof=1)) / 2)
            before = treated_values.mean() - other_values.mean()
            after = np.average(treated_values, weights=w[is_treated]) - np.average(
                other_values, weights=w[~is_treated]
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                rows.append(
                    {
                        "covariate": str(name),
                        "level": level,
                        "smd_before": finite_or_none(before / spread),
                        "smd_after": finite_or_none(after / spread),
                    }
                )
    return rows


def propensity_summary(
    prop: Propensity, arms: tuple[str, str] = ("blinatumomab", "car_t")
) -> dict[str, Any]:
    """The SAP's `adjusted.propensity` block (arms: untreated, treated)."""
    untreated, treated_arm = arms
    if prop.weights is None:
        return {
            "n": len(prop.treated),
            "weights_min": None,
            "weights_max": None,
            "ess": {untreated: None, treated_arm: None},
            "balance": [],
            "reason": prop.reason,
        }
    is_treated = prop.treated == 1
    return {
        "n": len(prop.weights),
        "weights_min": float(prop.weights.min()),
        "weights_max": float(prop.weights.max()),
        "ess": {
            untreated: effective_sample_size(prop.weights[~is_treated]),
            treated_arm: effective_sample_size(prop.weights[is_treated]),
        },
        "balance": balance(prop.covariates, prop.treated, prop.weights),
    }


@dataclass(frozen=True)
class WeightedKaplanMeier:
    """survfit(Surv(time, event) ~ 1, weights = w): the survival after each distinct time, and
    the weighted number at risk there."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray

    def at(self, time: float) -> float | None:
        """S(t), None when nobody is still at risk at t (SAP.md section 6)."""
        if not (self.times >= time).any():
            return None
        row = int(np.searchsorted(self.times, time, side="right")) - 1
        return 1.0 if row < 0 else float(self.survival[row])


def weighted_kaplan_meier(time: Any, event: Any, weights: Any) -> WeightedKaplanMeier:
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    w = np.asarray(weights, dtype=float)
    times, at_time = np.unique(time, return_inverse=True)
    leaving = np.bincount(at_time, weights=w, minlength=times.size)
    deaths = np.bincount(at_time, weights=w * event, minlength=times.size)
    at_risk = leaving[::-1].cumsum()[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1 - deaths / at_risk, 1.0)
    return WeightedKaplanMeier(times, np.cumprod(factor), at_risk)


def weighted_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    weights: pd.Series | np.ndarray,
) -> dict[str, Any]:
    """Weighted Cox model (Efron ties) with the robust variance, as
    coxph(Surv(time, event) ~ ..., weights = w, robust = TRUE): the exposure (first covariate)
    HR, 95% CI and Wald p from the robust standard error at the top level (SAP 15's HRCI, with
    `reason` None or why not), every term under `terms`."""
    names = [duration_col, event_col, *covariates]
    columns = {name: df[name] for name in names}
    # A Series is matched on the index (rows the propensity model left out have no weight and
    # are left out here too); an array is taken row by row.
    columns["_weight"] = (
        weights.astype(float).reindex(columns[duration_col].index)
        if isinstance(weights, pd.Series)
        else pd.Series(np.asarray(weights, float), index=columns[duration_col].index)
    )
    columns = survival.complete_columns(columns, [*names, "_weight"])
    return weighted_cox_of_design(
        survival.design_columns(columns, covariates),
        columns[duration_col].to_numpy(dtype=float),
        columns[event_col].to_numpy(dtype=float),
        columns["_weight"].to_numpy(dtype=float),
    )


def weighted_cox_of_design(
    design: survival.Design, durations: np.ndarray, observed: np.ndarray, w: np.ndarray
) -> dict[str, Any]:
    """`weighted_cox` on complete rows already coded: the first term is the exposure."""
    exposure = design.names[0]
    if observed.sum() == 0:
        return _hrci(survival.cox_not_estimable("no events"))
    if np.unique(design.x[:, 0]).size < 2:
        return _hrci(survival.cox_not_estimable(f"{exposure} does not vary"))
    try:
        fit = cox_fitting.fit(design.x, design.names, durations, observed, weights=w)
    except cox_fitting.NotEstimable as error:
        survival.log_not_estimable(
            error,
            f"weighted Cox model of {exposure}",
            design.names,
            len(design.x),
            int(observed.sum()),
        )
        return _hrci(survival.cox_not_estimable(str(error)))
    robust = cox_fitting.robust_covariance(fit, design.x, durations, observed, weights=w)
    result = survival.cox_terms(replace(fit, covariance=robust), exposure)
    result.update(n=len(design.x), events=int(observed.sum()))
    return _hrci(result)


def _hrci(result: dict[str, Any]) -> dict[str, Any]:
    result.setdefault("reason", None)
    return result


def _levels_as_text(column: pd.Series) -> pd.Series:
    """A category's values as text (str), a missing value as the level MISSING."""
    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    text = [MISSING if gap else str(value) for value, gap in zip(values, missing, strict=True)]
    return pd.Series(text, index=column.index, dtype=object)


def _is_number(column: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(column)
        and not isinstance(column.dtype, pd.CategoricalDtype)
        and not pd.api.types.is_bool_dtype(column)
    )


def adjusted_endpoint(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    arm_col: str,
    weights: pd.Series,
    *,
    arm_names: tuple[str, str] = ("blinatumomab", "car_t"),
    rate_months: Sequence[float] = (12, 24),
) -> dict[str, Any]:
    """SAP 15's `adjusted.pfs` (or `os`) block, times in months: the weighted Cox HR of the
    second arm (car_t) versus the first with its robust CI and p, and each arm's weighted
    Kaplan-Meier survival at 12 and 24 months (None when nobody is at risk). The weights are
    matched to the rows on the index (as `propensity` gives them); rows without one are left
    out."""
    exposed = arm_names[1]
    time, event, weight, arm = survival.complete_with_groups(
        df[duration_col], df[event_col], weights.astype(float).reindex(df.index), df[arm_col]
    )
    in_arms = (arm == arm_names[0]) | (arm == arm_names[1])
    time, event, weight, arm = time[in_arms], event[in_arms], weight[in_arms], arm[in_arms]
    design = survival.Design((arm == exposed).astype(float)[:, None], [exposed])
    block: dict[str, Any] = {"cox_iptw": weighted_cox_of_design(design, time, event, weight)}
    curves = {
        name: weighted_kaplan_meier(time[rows], event[rows], weight[rows])
        for name in arm_names
        for rows in [arm == name]
        if rows.any()
    }
    for month in rate_months:
        block[f"km_{month:g}m"] = {
            arm: curves[arm].at(month) if arm in curves else None for arm in arm_names
        }
    return block
