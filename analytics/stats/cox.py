"""Cox proportional hazards fits with Efron's ties, for right-censored and for counting-process
(start, stop] data (SAP.md sections 6 and 7), vectorised with numpy.

The Newton-Raphson iteration is lifelines' CoxPHFitter's (standardised covariates, its step
sizes and stopping rules), so a model it found not converged or separated is found so here; the
partial likelihood and its derivatives come from cumulative sums over the sorted times, as in
R's coxph, instead of lifelines' Python loop over event times (issue #8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from lifelines.utils import StepSizer
from scipy import linalg
from scipy.linalg import lapack

# lifelines' CoxPHFitter defaults, except the precision: its default 1e-7 on the Newton
# decrement leaves coefficients a few 1e-6 away from R's coxph.
PRECISION = 1e-12
INITIAL_STEP = 0.95
MIN_STEP = 1e-5
MAX_STEPS = 500
RELATIVE_PRECISION = 1e-9  # R's coxph stops on this relative change of the log-likelihood
# A "converged" fit whose last Newton step is still longer than this is not a maximum.
LARGE_STEP = 0.1


class NotEstimable(Exception):
    """The model cannot be fitted or did not converge. The message is the reason, short and
    stable (it is kept in the snapshot and shown, translated, to readers); `detail` is the
    numerical account for the log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail or reason


# The reasons, in the words the snapshot keeps (analytics.report.formatting translates them).
NOT_FITTED = "model could not be fitted (separation or collinearity)"
NOT_CONVERGED = "model did not converge (separation or collinearity)"


@dataclass(frozen=True)
class CoxFit:
    """Coefficients on the covariates' own scale, their covariance matrix, and the partial
    log-likelihoods of the fit and of the null model (all coefficients 0)."""

    names: list[str]
    coef: np.ndarray
    covariance: np.ndarray
    log_likelihood: float
    log_likelihood_null: float


def fit(
    x: np.ndarray,
    names: Sequence[str],
    stop: np.ndarray,
    event: np.ndarray,
    start: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> CoxFit:
    """Fit a Cox model (Efron ties). Without `start` every row is at risk from the origin; with
    it a row is at risk over (start, stop], as in R's Surv(start, stop, event). `weights` are
    case weights, as coxph(..., weights = w). `x` holds the covariates (rows x terms), `names`
    their names."""
    mean, std = x.mean(axis=0), x.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        standardised = (x - mean) / std
    partial = EfronPartialLikelihood(standardised, stop, event, start, weights)
    beta, log_likelihood, log_likelihood_null, hessian = newton_raphson(partial)
    try:
        covariance = -linalg.inv(hessian) / np.outer(std, std)
    except (linalg.LinAlgError, ValueError) as error:
        raise NotEstimable(NOT_FITTED, f"the information matrix is singular: {error}") from None
    return CoxFit(
        names=[str(name) for name in names],
        coef=beta / std,
        covariance=covariance,
        log_likelihood=log_likelihood,
        log_likelihood_null=log_likelihood_null,
    )


class EfronPartialLikelihood:
    """The log partial likelihood with Efron's ties, its gradient and Hessian in beta.

    At each distinct event time t with d tied events, the l-th (l = 0 .. d-1) event divides by
    the risk-set sum minus l/d of the tied events' sum. Risk-set sums of exp(x'b) and
    x exp(x'b) are cumulative sums over rows sorted by decreasing stop, less those over rows
    that enter (start) at or after t. The sum over events of the risk sets' x x' exp(x'b), for
    the Hessian, is regrouped by row: each row's x x' exp(x'b) weighted by the sum of 1 / (its
    events' denominators) over the event times at which it is at risk.

    With case weights w (R's coxfit6): exp(x'b) becomes w exp(x'b) in every sum, an event's
    x'b counts w times, and each of the d tied events' log-denominators counts the mean weight
    of the d events.
    """

    def __init__(
        self,
        x: np.ndarray,
        stop: np.ndarray,
        event: np.ndarray,
        start: np.ndarray | None,
        weights: np.ndarray | None = None,
    ) -> None:
        n, self.p = x.shape
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
        stop = np.asarray(stop, dtype=float)
        dead = np.flatnonzero(np.asarray(event, dtype=bool))
        dead = dead[np.argsort(stop[dead], kind="stable")]
        times, self.first, ties = np.unique(stop[dead], return_index=True, return_counts=True)
        self.group = np.repeat(np.arange(times.size), ties)
        # Efron's l/d for the l-th of d events tied at one time.
        self.fraction = (np.arange(dead.size) - self.first[self.group]) / ties[self.group]
        # Covariates transposed (p x rows), in the orders the sums run in.
        leaving = np.argsort(-stop, kind="stable")
        self.x_leaving = np.ascontiguousarray(x[leaving].T)
        self.x_dead = np.ascontiguousarray(x[dead].T)
        self.w_leaving, self.w_dead = w[leaving], w[dead]
        self.x_dead_sum = self.x_dead @ self.w_dead
        self.mean_weight = (np.bincount(self.group, weights=self.w_dead) / ties)[self.group]
        self.x, self.w, self.dead, self.leaving = x, w, dead, leaving
        self.at_risk = n - np.searchsorted(np.sort(stop), times, side="left")
        # A row is at risk at the event times from number `from_time` to `to_time` - 1.
        self.to_time = np.searchsorted(times, stop[leaving], side="right")
        self.from_time = np.zeros(n, dtype=int)
        self.x_entering: np.ndarray | None = None
        if start is not None:
            start = np.asarray(start, dtype=float)
            entering = np.argsort(-start, kind="stable")
            self.x_entering = np.ascontiguousarray(x[entering].T)
            self.w_entering = w[entering]
            self.not_yet = n - np.searchsorted(np.sort(start), times, side="left")
            self.from_time = np.searchsorted(times, start[leaving], side="right")

    def __call__(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(log-likelihood, gradient, Hessian) at beta."""
        group, x_leaving, x_dead = self.group, self.x_leaving, self.x_dead
        risk = self.w_leaving * np.exp(beta @ x_leaving)
        risk_set = running_sums(x_leaving, risk)[:, self.at_risk - 1]
        if self.x_entering is not None:
            entered_later = running_sums(
                self.x_entering, self.w_entering * np.exp(beta @ self.x_entering)
            )
            later = self.not_yet > 0
            risk_set[:, later] -= entered_later[:, self.not_yet[later] - 1]
        linear_dead = beta @ x_dead
        risk_dead = self.w_dead * np.exp(linear_dead)
        tied = np.add.reduceat(np.vstack([risk_dead, x_dead * risk_dead]), self.first, axis=1)
        # Per event: the risk-set sums less its share of the tied events' sums.
        sums = risk_set[:, group] - self.fraction * tied[:, group]
        s0 = sums[0]
        mean = sums[1:] / s0
        share = self.mean_weight
        log_likelihood = self.w_dead @ linear_dead - share @ np.log(s0)
        gradient = self.x_dead_sum - mean @ share
        # Per row: sum of 1/s0 over the event times it is at risk at, less the tied share of
        # its own event.
        inverse = np.concatenate([[0.0], np.cumsum(np.bincount(group, weights=share / s0))])
        weight = risk * (inverse[self.to_time] - inverse[self.from_time])
        own = risk_dead * np.bincount(group, weights=self.fraction * share / s0)[group]
        second = x_leaving @ (x_leaving * weight).T - x_dead @ (x_dead * own).T
        hessian = -(second - (mean * share) @ mean.T)
        return float(log_likelihood), gradient, hessian

    def score_residuals(self, beta: np.ndarray) -> np.ndarray:
        """Each row's score residual (rows x p, in the input order), Efron's ties as R's
        coxscore2: the row's event term x - (the mean of its event time's d Efron means) less
        its exp(x'b) (x - mean) dLambda summed over the Efron steps of the event times it is at
        risk at, its own event time's steps counted (1 - l/d) times."""
        to_time, from_time = np.empty_like(self.to_time), np.empty_like(self.from_time)
        to_time[self.leaving], from_time[self.leaving] = self.to_time, self.from_time
        risk = np.exp(self.x @ beta)
        x_leaving, x_dead, group = self.x_leaving, self.x_dead, self.group
        risk_set = running_sums(x_leaving, self.w_leaving * np.exp(beta @ x_leaving))
        risk_set = risk_set[:, self.at_risk - 1]
        if self.x_entering is not None:
            entered_later = running_sums(
                self.x_entering, self.w_entering * np.exp(beta @ self.x_entering)
            )
            later = self.not_yet > 0
            risk_set[:, later] -= entered_later[:, self.not_yet[later] - 1]
        risk_dead = self.w_dead * np.exp(beta @ x_dead)
        tied = np.add.reduceat(np.vstack([risk_dead, x_dead * risk_dead]), self.first, axis=1)
        sums = risk_set[:, group] - self.fraction * tied[:, group]
        mean = sums[1:] / sums[0]  # p x events
        hazard = self.mean_weight / sums[0]
        times = self.first.size

        def by_time(weights: np.ndarray) -> np.ndarray:
            return np.vstack(
                [np.bincount(group, weights=weights, minlength=times)]
                + [np.bincount(group, weights=m * weights, minlength=times) for m in mean]
            )

        full = by_time(hazard)  # (1 + p) x times: dLambda and mean dLambda
        own = by_time((1 - self.fraction) * hazard)  # the same for the rows that fail there
        cumulative = np.hstack([np.zeros((full.shape[0], 1)), np.cumsum(full, axis=1)])
        at_risk = cumulative[:, to_time] - cumulative[:, from_time]
        residuals = -risk[:, None] * (self.x * at_risk[0][:, None] - at_risk[1:].T)
        died_at = group
        saved = (full - own)[:, died_at]
        residuals[self.dead] += risk[self.dead][:, None] * (
            self.x[self.dead] * saved[0][:, None] - saved[1:].T
        )
        mean_of_means = by_time(np.ones_like(hazard))[1:] / np.bincount(group, minlength=times)
        residuals[self.dead] += self.x[self.dead] - mean_of_means[:, died_at].T
        return residuals


def robust_covariance(
    fit: CoxFit,
    x: np.ndarray,
    stop: np.ndarray,
    event: np.ndarray,
    start: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The robust (sandwich) covariance of coxph(..., robust = TRUE) with one cluster per row:
    D'D, D the weighted dfbeta residuals (weight x score residual x the model covariance)."""
    partial = EfronPartialLikelihood(x, stop, event, start, weights)
    dfbeta = (partial.w[:, None] * partial.score_residuals(fit.coef)) @ fit.covariance
    return dfbeta.T @ dfbeta


def running_sums(x: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """Cumulative sums of exp(x'b) and of x exp(x'b) along rows in order ((1 + p) x rows),
    from the covariates transposed (p x rows) and exp(x'b)."""
    return np.cumsum(np.vstack([risk, x * risk]), axis=1)


class PlainStepSizer(StepSizer):
    """lifelines' StepSizer, its test of the last three step norms in plain Python: the same
    comparisons (b - a < 0 is b < a for doubles), without numpy's diff and all on three
    numbers, which cost more than a Newton step at 1,000 rows (issue #16)."""

    @staticmethod
    def _is_monotonically_decreasing(array: list[float]) -> bool:
        return all(later < earlier for earlier, later in pairwise(array))


def newton_step(hessian: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """(-hessian)^-1 gradient by the Cholesky solve of lifelines' scipy.linalg.solve(assume_a=
    "pos"): scipy's cho_factor(check_finite=False) then cho_solve, calling the same LAPACK
    routines directly (for a few terms, scipy's checks and wrappers cost more than the solve;
    issue #16). Raises LinAlgError or ValueError where they do."""
    factor, info = lapack.dpotrf(-hessian, lower=False, clean=False)
    if info > 0:
        raise linalg.LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    if info < 0 or not (np.isfinite(factor).all() and np.isfinite(gradient).all()):
        raise ValueError("the Cholesky factor or the gradient is not finite")
    delta, info = lapack.dpotrs(factor, gradient, lower=False)
    if info != 0:
        raise ValueError(f"illegal value in {-info}th argument of internal potrs")
    return delta


def newton_raphson(
    partial: EfronPartialLikelihood,
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """lifelines' CoxPHFitter iteration: (beta, log-likelihood, null log-likelihood, Hessian),
    or NotEstimable where lifelines raises or warns of non-convergence or separation (its
    words are the error's detail, for the log)."""
    beta = np.zeros(partial.p)
    delta = np.zeros(partial.p)
    step_sizer = PlainStepSizer(INITIAL_STEP)
    step = step_sizer.next()
    previous = 0.0
    log_likelihood_null = None
    iteration = 0
    while True:
        beta = beta + step * delta
        iteration += 1
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log_likelihood, gradient, hessian = partial(beta)
        if log_likelihood_null is None:
            log_likelihood_null = log_likelihood
        try:
            delta = newton_step(hessian, gradient)
        except (linalg.LinAlgError, ValueError):
            raise NotEstimable(
                NOT_FITTED, "Convergence halted due to matrix inversion problems"
            ) from None
        if np.isnan(delta).any():
            raise NotEstimable(NOT_FITTED, "delta contains nan value(s)")
        norm_delta = float(linalg.norm(delta))
        decrement = float(gradient @ delta) / 2
        if (
            norm_delta < PRECISION
            or (previous != 0 and abs(log_likelihood - previous) / -previous < RELATIVE_PRECISION)
            or decrement < PRECISION
        ):
            break
        if iteration >= MAX_STEPS or step <= MIN_STEP:
            raise NotEstimable(
                NOT_CONVERGED,
                f"Newton-Raphson failed to converge sufficiently in {iteration} steps.",
            )
        if abs(log_likelihood) < 0.0001 and norm_delta > 1.0:
            raise NotEstimable(
                NOT_CONVERGED,
                "The log-likelihood is getting suspiciously close to 0 and the delta is still "
                "large. There may be complete separation in the dataset.",
            )
        previous = log_likelihood
        step = step_sizer.update(norm_delta).next()
    if norm_delta > LARGE_STEP:
        raise NotEstimable(
            NOT_CONVERGED,
            "Newton-Raphson convergence completed successfully but "
            f"norm(delta) is still high, {norm_delta:.3f}. This may imply non-unique solutions "
            "to the maximum likelihood. Perhaps there is collinearity or complete separation "
            "in the dataset?",
        )
    # lifelines' CoxPHFitter stops before this last, tiny step, a few 1e-8 short of the maximum
    # that R's coxph reaches; the estimate takes it.
    beta = beta + delta
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_likelihood, _, hessian = partial(beta)
    return beta, log_likelihood, log_likelihood_null, hessian
