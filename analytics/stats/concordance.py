"""Harrell's concordance index of a Cox model's risk score, as lifelines' `concordance_index`
gives it (the same pairs, the same ties), without its loop in Python over every subject.

A pair is comparable when one subject died before the other left the study: subject k (died or
censored at T_k) is compared with every subject i who died earlier (T_i < T_k), and a censored
k also with those who died at T_k. The pair is concordant when i's predicted time is shorter
than k's, tied (counting one half) when equal. The registry's models have categorical
covariates only, so their scores take a few distinct values: the deaths, sorted by time, are
counted per predicted value in a cumulative table, and each subject's comparisons are one
lookup in it. With many distinct values (the table would not fit) lifelines counts them.
"""

from __future__ import annotations

import numpy as np
from lifelines.utils import concordance_index as lifelines_concordance_index

# The largest table (deaths x distinct predicted values) counted here, in cells.
MAX_TABLE_CELLS = 20_000_000


def concordance_index(durations, predicted, observed) -> float:
    """Harrell's C of `predicted` times (a higher predicted time: a longer survival), as
    lifelines.utils.concordance_index(durations, predicted, observed); nan with no comparable
    pair."""
    durations = np.asarray(durations, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    died = np.asarray(observed).astype(bool)
    levels, level_of = np.unique(predicted, return_inverse=True)
    deaths = int(died.sum())
    if (deaths + 1) * (len(levels) + 1) > MAX_TABLE_CELLS:
        return lifelines_concordance_index(durations, predicted, died)
    order = np.argsort(durations[died], kind="stable")
    death_times = durations[died][order]
    death_levels = level_of[died][order]
    # below[m, l]: how many of the first m deaths (by time) have a predicted value below level
    # l; at[m, l]: how many have level l.
    at = np.zeros((deaths + 1, len(levels)), dtype=np.int64)
    at[np.arange(1, deaths + 1), death_levels] = 1
    np.cumsum(at, axis=0, out=at)
    below = np.zeros_like(at)
    np.cumsum(at[:, :-1], axis=1, out=below[:, 1:])
    # Each subject's pool: the deaths before its time (a death), or up to its time (censored).
    pool = np.where(
        died,
        np.searchsorted(death_times, durations, side="left"),
        np.searchsorted(death_times, durations, side="right"),
    )
    pairs = int(pool.sum())
    if pairs == 0:
        return float("nan")
    correct = int(below[pool, level_of].sum())
    tied = int(at[pool, level_of].sum())
    return (correct + 0.5 * tied) / pairs
