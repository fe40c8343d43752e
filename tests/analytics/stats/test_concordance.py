"""analytics.stats.concordance gives lifelines' concordance index exactly (the same pairs and
ties), on data with ties in time, in score and between deaths and censorings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index as lifelines_concordance_index

from analytics.stats import concordance


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 12),  # few distinct times: ties everywhere
            st.integers(0, 4),  # few distinct scores, as with categorical covariates
            st.booleans(),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_the_same_index_as_lifelines(rows):
    times, scores, died = (np.array(column) for column in zip(*rows, strict=True))
    try:
        expected = lifelines_concordance_index(times, -scores * 0.37, died)
    except ZeroDivisionError:  # lifelines: "No admissable pairs in the dataset."
        expected = float("nan")
    found = concordance.concordance_index(times, -scores * 0.37, died)
    assert found == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_many_distinct_predictions_are_counted_by_lifelines(monkeypatch):
    rng = np.random.default_rng(7)
    times, predicted = rng.exponential(10, 500).round(), rng.normal(size=500)
    died = rng.random(500) < 0.6
    table = concordance.concordance_index(times, predicted, died)
    monkeypatch.setattr(concordance, "MAX_TABLE_CELLS", 10)
    assert concordance.concordance_index(times, predicted, died) == pytest.approx(table, rel=1e-12)
    assert table == pytest.approx(lifelines_concordance_index(times, predicted, died), rel=1e-12)


def test_no_comparable_pair_gives_nan():
    assert np.isnan(concordance.concordance_index([5, 5], [1.0, 2.0], [True, True]))
