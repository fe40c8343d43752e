"""Rates, their exact intervals and the categorical tests (SAP.md sections 2-5)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import StratifiedTable

from analytics.stats.plain import finite_or_none, interval

ARMS = ("blinatumomab", "car_t")

# R's wilcox.test computes the exact null distribution below 50 observations per group when
# there are no ties, and the normal approximation with continuity correction otherwise.
MANN_WHITNEY_EXACT_BELOW = 50


class Rate(TypedDict):
    n: int
    N: int
    proportion: float | None
    ci95: list[float | None]


class Cmh(TypedDict):
    chi2: float | None
    p: float | None
    or_mh: float | None
    ci95: list[float | None]
    p_breslow_day: float | None
    reason: NotRequired[str]


def rate(n: int, N: int) -> Rate:
    """n/N with its Clopper-Pearson exact 95% interval."""
    n, N = int(n), int(N)
    if not 0 <= n <= N:
        raise ValueError(f"a rate needs 0 <= n <= N, got {n}/{N}")
    if N == 0:
        return {"n": 0, "N": 0, "proportion": None, "ci95": [None, None]}
    # The beta quantiles of R's binom.test, in closed form (scipy's binomtest finds the same
    # bounds by root-finding, a millisecond a rate).
    low = stats.beta.ppf(0.025, n, N - n + 1) if n > 0 else 0.0
    high = stats.beta.ppf(0.975, n + 1, N - n) if n < N else 1.0
    return {"n": n, "N": N, "proportion": n / N, "ci95": interval(low, high)}


def rate_compare(
    n_a: int,
    N_a: int,
    n_b: int,
    N_b: int,
    arms: tuple[str, str] = ARMS,
) -> dict[str, Any]:
    """Both arms' rates and the two-sided Fisher exact p (None when an arm is empty)."""
    first, second = arms
    p_fisher = None
    if N_a > 0 and N_b > 0:
        _, p = stats.fisher_exact([[n_a, N_a - n_a], [n_b, N_b - n_b]], alternative="two-sided")
        p_fisher = finite_or_none(p)
    return {first: rate(n_a, N_a), second: rate(n_b, N_b), "p_fisher": p_fisher}


def cmh(tables: Sequence[Any]) -> Cmh:
    """Cochran-Mantel-Haenszel test over 2x2 strata [[a, b], [c, d]], without continuity
    correction, with the Mantel-Haenszel pooled odds ratio (Robins-Breslow-Greenland CI, as R's
    mantelhaen.test) and the Breslow-Day test of homogeneity.

    A stratum with an empty row or column carries no information and is dropped; with none left
    every statistic is None and `reason` says why.
    """
    informative = []
    for table in tables:
        counts = np.asarray(table, dtype=float)
        if counts.shape != (2, 2):
            raise ValueError(f"each stratum must be a 2x2 table, got shape {counts.shape}")
        if (counts.sum(axis=0) > 0).all() and (counts.sum(axis=1) > 0).all():
            informative.append(counts)
    if not informative:
        return _cmh_not_estimable("no stratum has both arms and both outcomes")

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        stratified = StratifiedTable(informative)
        null_test = stratified.test_null_odds(correction=False)
        chi2, p = finite_or_none(null_test.statistic), finite_or_none(null_test.pvalue)
        if chi2 is None:
            return _cmh_not_estimable("no variance under the null hypothesis")
        # With a zero cell in every stratum the estimate is 0 (or infinite) and its interval
        # undefined: R's mantelhaen.test reports 0 (Inf) with a NaN interval. JSON has no
        # infinity, so an infinite ratio is None.
        or_mh = finite_or_none(stratified.oddsratio_pooled)
        result: Cmh = {
            "chi2": chi2,
            "p": p,
            "or_mh": or_mh,
            "ci95": [None, None],
            "p_breslow_day": None,
        }
        if not or_mh:
            result["reason"] = (
                "pooled odds ratio is 0 or infinite and has no interval "
                "(a zero cell in every stratum)"
            )
            return result
        result["ci95"] = interval(*stratified.oddsratio_pooled_confint(alpha=0.05))
        if len(informative) > 1:
            result["p_breslow_day"] = finite_or_none(stratified.test_equal_odds().pvalue)
    return result


def _cmh_not_estimable(reason: str) -> Cmh:
    return {
        "chi2": None,
        "p": None,
        "or_mh": None,
        "ci95": [None, None],
        "p_breslow_day": None,
        "reason": reason,
    }


def mann_whitney(x: Sequence[float] | pd.Series, y: Sequence[float] | pd.Series) -> float | None:
    """Two-sided Mann-Whitney U p, computed as R's wilcox.test does; None if a group is empty."""
    first = pd.Series(x, dtype=float).dropna().to_numpy()
    second = pd.Series(y, dtype=float).dropna().to_numpy()
    if first.size == 0 or second.size == 0:
        return None
    pooled = np.concatenate([first, second])
    if np.unique(pooled).size == 1:
        return None
    has_ties = np.unique(pooled).size < pooled.size
    small = first.size < MANN_WHITNEY_EXACT_BELOW and second.size < MANN_WHITNEY_EXACT_BELOW
    method = "exact" if small and not has_ties else "asymptotic"
    result = stats.mannwhitneyu(
        first, second, alternative="two-sided", use_continuity=True, method=method
    )
    return finite_or_none(result.pvalue)


def categorical_test(table: Sequence[Sequence[int]] | pd.DataFrame) -> float | None:
    """Fisher's exact p for a 2x2 table, Pearson's chi-square p for a larger one.

    Rows or columns with no counts are dropped first; None when fewer than two of either remain.
    """
    counts = np.asarray(table, dtype=float)
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return None
    if counts.shape == (2, 2):
        _, p = stats.fisher_exact(counts.astype(int), alternative="two-sided")
        return finite_or_none(p)
    _, p, _, _ = stats.chi2_contingency(counts, correction=False)
    return finite_or_none(p)
