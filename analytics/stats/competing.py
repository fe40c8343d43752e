"""Competing risks (SAP.md section 12): the Aalen-Johansen cumulative incidence with its
variance and Gray's test as R's `cmprsk::cuminc`, Fine-Gray regression as `cmprsk::crr`, and
cause-specific Cox models as `survival::coxph`.

No maintained Python library computes cmprsk's variance, Gray's test or crr's variance
(lifelines' AalenJohansenFitter has another variance and no test or regression), so they are
written here, vectorised: cmprsk loops over event times in Fortran, and crr over pairs of
subjects (O(n^2)); here every risk-set sum is a cumulative sum over the sorted times.

Causes are coded 0 = censored, 1, 2, ... = the cause of the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg

from analytics.stats import survival
from analytics.stats.cox import NOT_CONVERGED, NOT_FITTED
from analytics.stats.plain import finite_or_none, interval

Z_95 = survival.Z_95
RATE_MONTHS = survival.RATE_MONTHS

# cmprsk::crr's defaults: the iteration stops when max|score| * max(|b|, 1) is below
# GRADIENT_TOLERANCE * max(|log-likelihood|, 1); R stops after 10 iterations, this after more
# (the same iterates, so the same estimate whenever R converges).
GRADIENT_TOLERANCE = 1e-6
MAX_ITERATIONS = 50
ARMIJO = 1e-4
MAX_HALVINGS = 20


@dataclass(frozen=True)
class CumulativeIncidence:
    """The Aalen-Johansen estimate of one cause's cumulative incidence at each distinct time of
    that cause's events, with cmprsk's variance; `last_time` is the largest follow-up time
    (the curve is not defined past it)."""

    times: np.ndarray
    incidence: np.ndarray
    variance: np.ndarray
    last_time: float

    def at(self, time: float) -> tuple[float | None, float | None]:
        """(F(t), its variance) as cmprsk::timepoints: the last step at or before t; None past
        the largest follow-up time."""
        if time > self.last_time:
            return None, None
        row = int(np.searchsorted(self.times, time, side="right")) - 1
        if row < 0:
            return 0.0, 0.0
        return float(self.incidence[row]), float(self.variance[row])


def cumulative_incidence(time: Any, cause: Any, of_cause: int = 1) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of `of_cause`, with the variance of cmprsk's
    `cuminc` (Fortran routine cinc: a delta-method variance accumulated over the event times of
    every cause)."""
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause)
    if time.size == 0:
        raise ValueError("no subjects")
    times, at_time = np.unique(time, return_inverse=True)
    leaving = np.bincount(at_time, minlength=times.size).astype(float)
    interest = np.bincount(at_time, weights=cause == of_cause, minlength=times.size)
    other = np.bincount(at_time, weights=(cause != 0) & (cause != of_cause), minlength=times.size)
    at_risk = time.size - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
    keep = (interest + other) > 0
    times, at_risk, d1, d2 = times[keep], at_risk[keep], interest[keep], other[keep]
    # Overall Kaplan-Meier just before (s_before) and at (s_after) each event time.
    s_after = np.cumprod((at_risk - d1 - d2) / at_risk)
    s_before = np.concatenate([[1.0], s_after[:-1]])
    incidence = np.cumsum(s_before * d1 / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_after = np.where(s_after > 0, 1 / s_after, 0.0)

    def increments(deaths: np.ndarray, t4: np.ndarray, t3: np.ndarray, keep: np.ndarray) -> tuple:
        with np.errstate(divide="ignore", invalid="ignore"):
            t5 = np.where(deaths > 1, 1 - (deaths - 1) / (at_risk - 1), 1.0)
        t6 = np.where(keep, s_before**2 * t5 * deaths / at_risk**2, 0.0)
        t4, t3 = np.where(keep, t4, 0.0), np.where(keep, t3, 0.0)
        return t4 * t4 * t6, t3 * t4 * t6, t3 * t3 * t6

    # Other causes' events (only while somebody survives them), then this cause's.
    other_terms = increments(d2, incidence * inverse_after, inverse_after, (d2 > 0) & (s_after > 0))
    own_terms = increments(d1, 1 + inverse_after * incidence, inverse_after, d1 > 0)
    v1, v2, v3 = (np.cumsum(a + b) for a, b in zip(other_terms, own_terms, strict=True))
    variance = v1 + incidence**2 * v3 - 2 * incidence * v2
    steps = d1 > 0
    return CumulativeIncidence(
        times=times[steps],
        incidence=incidence[steps],
        variance=variance[steps],
        last_time=float(time.max()),
    )


def log_log_interval(incidence: float | None, variance: float | None) -> list[float | None]:
    """The SAP's 95% interval F ** exp(+/- z sqrt(v) / (F log F)), lower bound first; [0, 0]
    before the first event."""
    if incidence is None or variance is None:
        return [None, None]
    if incidence == 0:
        return [0.0, 0.0]
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = Z_95 * np.sqrt(variance) / (incidence * np.log(incidence))
        bounds = sorted([incidence ** np.exp(spread), incidence ** np.exp(-spread)])
    return interval(*bounds)


def cif_summary(
    times: Any,
    causes: Any,
    of_cause: int,
    *,
    rate_months: Sequence[float] = RATE_MONTHS,
) -> dict[str, Any]:
    """The SAP's CIF block for one group (SAP.md section 15), times in months (or any one unit:
    the keys `at_12m` only name the values of `rate_months`)."""
    durations, cause = survival.complete_floats(times, causes)
    summary: dict[str, Any] = {
        "n": int(durations.size),
        "events": int((cause == of_cause).sum()),
        "competing": int(((cause != 0) & (cause != of_cause)).sum()),
    }
    for month in rate_months:
        summary[f"at_{month:g}m"] = None
        summary[f"at_{month:g}m_ci95"] = [None, None]
    summary["curve"] = []
    if durations.size == 0:
        summary["reason"] = "no patients"
        return summary
    fit = cumulative_incidence(durations, cause, of_cause)
    for month in rate_months:
        incidence, variance = fit.at(month)
        summary[f"at_{month:g}m"] = finite_or_none(incidence)
        summary[f"at_{month:g}m_ci95"] = log_log_interval(incidence, variance)
    summary["curve"] = [{"t": 0.0, "f": 0.0}] + [
        {"t": t, "f": f}  # tolist() gives Python floats
        for t, f in zip(fit.times.tolist(), fit.incidence.tolist(), strict=True)
    ]
    return summary


def gray_test(
    time: Any, cause: Any, group: Any, of_cause: int = 1, *, rho: float = 0.0
) -> dict[str, Any]:
    """Gray's k-sample test of equal cumulative incidence of `of_cause` (cmprsk::cuminc's
    Tests, Fortran routine crst, one stratum): chi-square on k - 1 degrees of freedom."""
    time, cause, group = survival.complete_with_groups(time, cause, group)
    levels, group_index = survival.group_codes(group)
    if levels.size < 2:
        return {"chi2": None, "p": None, "df": None, "reason": "fewer than two groups"}
    if not (cause == of_cause).any():
        return {"chi2": None, "p": None, "df": levels.size - 1, "reason": "no events of this cause"}
    score, covariance = _gray_score(time, cause, group_index, of_cause, rho)
    df = levels.size - 1
    if np.linalg.matrix_rank(covariance) < df:
        return {"chi2": None, "p": None, "df": df, "reason": "no events of this cause"}
    chi2 = float(score @ linalg.solve(covariance, score, assume_a="sym"))
    return {
        "chi2": finite_or_none(chi2),
        "p": finite_or_none(survival.chi_square_p(chi2, df)),
        "df": df,
    }


def _gray_score(
    time: np.ndarray, cause: np.ndarray, group: np.ndarray, of_cause: int, rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gray's score for the first k - 1 groups and its covariance (Gray 1988, as cmprsk's
    crst): every per-time quantity is an array over (event time, group), accumulated with
    cumulative sums."""
    k = int(group.max()) + 1
    times, at_time = np.unique(time, return_inverse=True)
    cells = times.size * k

    def count(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(at_time * k + group, weights=weights, minlength=cells).reshape(-1, k)

    leaving = count().astype(float)
    d1 = count((cause == of_cause).astype(float))
    d2 = count(((cause != 0) & (cause != of_cause)).astype(float))
    at_risk = leaving.sum(axis=0) - np.concatenate([np.zeros((1, k)), np.cumsum(leaving, 0)[:-1]])
    keep = (d1 + d2).sum(axis=1) > 0
    rs, d1, d2 = at_risk[keep], d1[keep], d2[keep]
    present = rs > 0
    safe_rs = np.where(present, rs, 1.0)
    # Per group: Kaplan-Meier (all causes) and cumulative incidence, just before and at each time.
    factor = np.where(present, (rs - d1 - d2) / safe_rs, 1.0)
    skm = np.cumprod(factor, axis=0)
    skmm = np.vstack([np.ones((1, k)), skm[:-1]])
    f1 = np.cumsum(np.where(present, skmm * d1 / safe_rs, 0.0), axis=0)
    f1m = np.vstack([np.zeros((1, k)), f1[:-1]])
    nd1 = d1.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(present, rs / skmm, 0.0)  # the "h" of the paper, per group
    tr = t1.sum(axis=1)
    tq = (t1 * (1 - f1m)).sum(axis=1)
    f = np.cumsum(nd1 / tr)
    fm = np.concatenate([[0.0], f[:-1]])
    fb = (1 - fm) ** rho
    a = fb[:, None, None] * (
        np.einsum("ti,ij->tij", t1, np.eye(k)) - t1[:, :, None] * t1[:, None, :] / tr[:, None, None]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        c_step = np.where(nd1 > 0, nd1 / (tr * (1 - fm)), 0.0)
    c = np.cumsum(a * c_step[:, None, None], axis=0)
    score = (
        fb[:, None] * np.where(present, d1 - nd1[:, None] * t1 * (1 - f1m) / tq[:, None], 0.0)
    ).sum(axis=0)[: k - 1]

    # This cause's events.
    with np.errstate(divide="ignore", invalid="ignore"):
        t4 = np.where(skm > 0, 1 - (1 - f[:, None]) / skm, 1.0)
        t5 = np.where(nd1[:, None] > 1, 1 - (nd1[:, None] - 1) / (tr[:, None] * skmm - 1), 1.0)
        t3 = np.where(
            present & (nd1[:, None] > 0), t5 * skmm * nd1[:, None] / (tr[:, None] * safe_rs), 0.0
        )
    b = a - t4[:, None, :] * c  # (time, i, k)
    v3 = (t4 * t4 * t3).sum(axis=0)
    v2 = np.einsum("tik,tk->ik", b, t4 * t3)
    v = np.einsum("tik,tjk,tk->ij", b, b, t3)
    # The other causes' events.
    with np.errstate(divide="ignore", invalid="ignore"):
        other = present & (skm > 0) & (d2 > 0)
        t4 = np.where(other, (1 - f[:, None]) / np.where(skm > 0, skm, 1.0), 0.0)
        t5 = np.where(d2 > 1, 1 - (d2 - 1) / (safe_rs - 1), 1.0)
        t3 = np.where(other, t5 * skmm**2 * d2 / safe_rs**2, 0.0)
    b = t4[:, None, :] * c
    v3 += (t4 * t4 * t3).sum(axis=0)
    v2 -= np.einsum("tik,tk->ik", b, t4 * t3)
    v += np.einsum("tik,tjk,tk->ij", b, b, t3)
    c_final = c[-1]
    v += (c_final * v3) @ c_final.T + c_final @ v2.T + v2 @ c_final.T
    return score, v[: k - 1, : k - 1]


@dataclass(frozen=True)
class FineGrayFit:
    names: list[str]
    coef: np.ndarray
    covariance: np.ndarray
    log_likelihood: float
    converged: bool


def fine_gray(
    df: pd.DataFrame,
    duration_col: str,
    cause_col: str,
    covariates: Sequence[str],
    of_cause: int = 1,
) -> dict[str, Any]:
    """Fine-Gray subdistribution hazard model as cmprsk::crr. The first covariate is the
    exposure: its HR, 95% CI and Wald p (with crr's variance, which accounts for the estimated
    censoring distribution) at the top level, every term under `terms`. A model that cannot be
    fitted gives None values and a `reason`."""
    if not covariates:
        raise ValueError("fine_gray needs at least one covariate")
    exposure = covariates[0]
    frame = df[[duration_col, cause_col, *covariates]].dropna()
    design = survival.design_matrix(frame, covariates)
    cause = frame[cause_col].to_numpy(dtype=float)
    events = int((cause == of_cause).sum())
    if events == 0:
        return survival.cox_not_estimable("no events")
    if design[exposure].nunique() < 2:
        return survival.cox_not_estimable(f"{exposure} does not vary")
    level_events = pd.Series(cause == of_cause).groupby(design[exposure].to_numpy()).sum()
    if (level_events == 0).any() and design[exposure].nunique() == 2:
        return survival.cox_not_estimable(f"no events in one group of {exposure}")
    try:
        fit = fine_gray_fit(
            design.to_numpy(dtype=float),
            frame[duration_col].to_numpy(dtype=float),
            cause,
            of_cause,
            names=[str(name) for name in design.columns],
        )
    except np.linalg.LinAlgError:
        return survival.cox_not_estimable(NOT_FITTED)
    if not fit.converged:
        return survival.cox_not_estimable(NOT_CONVERGED)
    result = survival.cox_terms(fit, exposure)  # type: ignore[arg-type]
    if result.get("reason"):
        return result
    result.update(n=len(design), events=events, reason=None)
    return result


def fine_gray_fit(
    x: np.ndarray,
    time: np.ndarray,
    cause: np.ndarray,
    of_cause: int = 1,
    *,
    names: list[str] | None = None,
) -> FineGrayFit:
    """crr's estimate (Newton-Raphson with step halving from 0, its stopping rule) and crr's
    sandwich variance (Fine and Gray 1999, with the censoring distribution's contribution)."""
    problem = FineGray(x, time, cause, of_cause)
    beta = np.zeros(problem.p)
    converged = False
    minus_ll, score, information = problem.derivatives(beta)
    for _ in range(MAX_ITERATIONS):
        if np.max(np.abs(score) * np.maximum(np.abs(beta), 1)) < max(abs(minus_ll), 1) * (
            GRADIENT_TOLERANCE
        ):
            converged = True
            break
        step = -linalg.solve(information, score, assume_a="sym")
        for _halving in range(MAX_HALVINGS + 1):
            candidate = beta + step
            value = problem.minus_log_likelihood(candidate)
            if np.isfinite(value) and value <= minus_ll + ARMIJO * float(step @ score):
                break
            step = step / 2
        else:
            break
        beta = candidate
        minus_ll, score, information = problem.derivatives(beta)
    covariance = problem.covariance(beta, information)
    return FineGrayFit(
        names=names or [f"x{i}" for i in range(problem.p)],
        coef=beta,
        covariance=covariance,
        log_likelihood=-minus_ll,
        converged=converged,
    )


class FineGray:
    """Fine-Gray's weighted partial likelihood over the data sorted by time.

    At a failure time t of the cause of interest the risk set holds everyone still followed
    (time >= t) with weight 1 and everyone who failed of another cause before t with weight
    G(t-)/G(their time-), G the Kaplan-Meier of the censoring. Both are cumulative sums: the
    first backwards over the sorted times, the second forwards over the competing failures,
    times G(t-). Ties among failures: Breslow's (as crr).
    """

    def __init__(self, x: np.ndarray, time: np.ndarray, cause: np.ndarray, of_cause: int) -> None:
        order = np.argsort(time, kind="stable")
        self.x = np.asarray(x, dtype=float)[order]
        self.time = np.asarray(time, dtype=float)[order]
        cause = np.asarray(cause)[order]
        self.n, self.p = self.x.shape
        self.failed = cause == of_cause
        self.competing = (cause != 0) & ~self.failed
        self.censored = cause == 0
        # G(t-) at each subject's time: censoring Kaplan-Meier (censoring is the event; events
        # at the same time count as still at risk).
        times, self.at_time = np.unique(self.time, return_inverse=True)
        leaving = np.bincount(self.at_time, minlength=times.size).astype(float)
        censored = np.bincount(self.at_time, weights=self.censored, minlength=times.size)
        self.at_risk = self.n - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
        g_after = np.cumprod(1 - censored / self.at_risk)
        self.g_before_time = np.concatenate([[1.0], g_after[:-1]])
        self.g_before = self.g_before_time[self.at_time]
        self.times = times
        self.censored_at = censored
        # The distinct failure times, their number of failures, and the first subject at each.
        self.fail_times, self.deaths = np.unique(self.time[self.failed], return_counts=True)
        self.fail_rows = np.searchsorted(self.time, self.fail_times, side="left")
        self.g_fail = self.g_before[self.fail_rows]
        # Competing failures strictly before each failure time.
        self.competing_before = np.searchsorted(
            self.time[self.competing], self.fail_times, side="left"
        )

    def _risk_sums(self, beta: np.ndarray, second: bool) -> tuple[np.ndarray, ...]:
        """S0, S1 (and S2) at each distinct failure time."""
        risk = np.exp(self.x @ beta)
        parts = [risk[:, None], self.x * risk[:, None]]
        if second:
            parts.append(
                (self.x[:, :, None] * self.x[:, None, :]).reshape(self.n, -1) * risk[:, None]
            )
        stacked = np.hstack(parts)
        # Those still followed at t: a reverse cumulative sum from the first row at t.
        followed = np.cumsum(stacked[::-1], axis=0)[::-1][self.fail_rows]
        comp = stacked[self.competing] / self.g_before[self.competing][:, None]
        comp = np.vstack([np.zeros((1, stacked.shape[1])), np.cumsum(comp, axis=0)])
        total = followed + self.g_fail[:, None] * comp[self.competing_before]
        s0 = total[:, 0]
        s1 = total[:, 1 : 1 + self.p]
        if second:
            return s0, s1, total[:, 1 + self.p :].reshape(-1, self.p, self.p)
        return s0, s1

    def minus_log_likelihood(self, beta: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            s0, _ = self._risk_sums(beta, second=False)
            return float(-(self.x[self.failed] @ beta).sum() + (self.deaths * np.log(s0)).sum())

    def derivatives(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(minus log-likelihood, its gradient, its Hessian = the information), as crrfsv."""
        s0, s1, s2 = self._risk_sums(beta, second=True)
        mean = s1 / s0[:, None]
        minus_ll = float(-(self.x[self.failed] @ beta).sum() + (self.deaths * np.log(s0)).sum())
        gradient = -self.x[self.failed].sum(axis=0) + (self.deaths[:, None] * mean).sum(axis=0)
        information = np.einsum(
            "t,tij->ij", self.deaths, s2 / s0[:, None, None] - mean[:, :, None] * mean[:, None, :]
        )
        return minus_ll, gradient, information

    def covariance(self, beta: np.ndarray, information: np.ndarray) -> np.ndarray:
        """crr's variance: I^-1 (sum_i (eta_i + psi_i)(eta_i + psi_i)') I^-1 (crrvv)."""
        s0, s1 = self._risk_sums(beta, second=False)
        mean = s1 / s0[:, None]
        risk = np.exp(self.x @ beta)
        hazard = self.deaths / s0  # d Lambda at each failure time
        # Per subject: the position of its time among the failure times (how many are <= it).
        upto = np.searchsorted(self.fail_times, self.time, side="right")

        def cumulative(values: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])

        a = cumulative(hazard)
        b = cumulative(mean * hazard[:, None])
        ag = cumulative(self.g_fail * hazard)
        bg = cumulative(mean * (self.g_fail * hazard)[:, None])
        # eta: the d N part for failures, the d Lambda part over the risk set each subject is in.
        eta = -risk[:, None] * (self.x * a[upto][:, None] - b[upto])
        later = (self.x * (ag[-1] - ag[upto])[:, None] - (bg[-1] - bg[upto])) * (
            risk / self.g_before
        )[:, None]
        eta -= np.where(self.competing[:, None], later, 0.0)
        own_time = np.minimum(np.searchsorted(self.fail_times, self.time), self.deaths.size - 1)
        eta += np.where(self.failed[:, None], self.x - mean[own_time], 0.0)

        # psi: q(u) at the censoring times u, q(u) = sum over failure times s >= u of
        # G(s-) dLambda(s) (C1(u) - xbar(s) C0(u)), C the sums over competing failures before u.
        censor_times = self.censored_at > 0
        u = self.times[censor_times]
        first_at_or_after = np.searchsorted(self.fail_times, u, side="left")
        comp = np.hstack([risk[:, None], self.x * risk[:, None]])[self.competing]
        comp = cumulative(comp / self.g_before[self.competing][:, None])
        before = comp[np.searchsorted(self.time[self.competing], u, side="left")]
        q = before[:, 1:] * (ag[-1] - ag[first_at_or_after])[:, None] - before[:, :1] * (
            bg[-1] - bg[first_at_or_after]
        )
        y = self.at_risk[censor_times]
        compensator = cumulative(-self.censored_at[censor_times][:, None] * q / (y**2)[:, None])
        position = np.searchsorted(u, self.time, side="right")
        psi = compensator[position]
        if u.size:
            own = np.minimum(np.searchsorted(u, self.time), u.size - 1)
            psi += np.where(self.censored[:, None], q[own] / y[own][:, None], 0.0)
        influence = eta + psi
        inverse = linalg.inv(information)
        return inverse @ (influence.T @ influence) @ inverse


def cause_specific_cox(
    df: pd.DataFrame,
    duration_col: str,
    cause_col: str,
    covariates: Sequence[str],
    of_cause: int = 1,
) -> dict[str, Any]:
    """Cause-specific Cox model (Efron ties): the other causes' events are censored, as
    survival::coxph(Surv(time, cause == k) ~ ...)."""
    columns = survival.complete_columns(df, [duration_col, cause_col, *covariates])
    result = survival.cox_of_design(
        survival.design_columns(columns, covariates),
        columns[duration_col].to_numpy(dtype=float),
        (columns[cause_col].to_numpy() == of_cause).astype(float),
        concordance=False,
    )
    result.setdefault("reason", None)  # SAP 15's HRCI always has it
    return result


def cause_block(
    months: Any,
    causes: Any,
    arms: Any,
    of_cause: int,
    *,
    arm_names: tuple[str, str] = ("blinatumomab", "car_t"),
    rate_months: Sequence[float] = RATE_MONTHS,
) -> dict[str, Any]:
    """SAP 15's block for one cause ("relapse" or "nrm"): each arm's CIF, Gray's test, and the
    Fine-Gray and cause-specific Cox HRs of the second arm (car_t) versus the first."""
    exposed = arm_names[1]
    frame = pd.DataFrame(
        {
            "time": pd.Series(months, dtype=float).to_numpy(),
            "cause": pd.Series(causes, dtype=float).to_numpy(),
            "arm": pd.Series(arms).to_numpy(),
        }
    ).dropna()
    frame = frame[frame["arm"].isin(arm_names)]
    frame[exposed] = (frame["arm"] == exposed).astype(float)
    block: dict[str, Any] = {}
    for arm in arm_names:
        rows = frame[frame["arm"] == arm]
        block[arm] = cif_summary(rows["time"], rows["cause"], of_cause, rate_months=rate_months)
    gray = gray_test(frame["time"], frame["cause"], frame["arm"], of_cause)
    block["gray"] = {"chi2": gray["chi2"], "p": gray["p"]}
    if gray.get("reason"):
        block["gray"]["reason"] = gray["reason"]
    block["fine_gray"] = fine_gray(frame, "time", "cause", [exposed], of_cause)
    block["cause_specific_cox"] = cause_specific_cox(frame, "time", "cause", [exposed], of_cause)
    return block
