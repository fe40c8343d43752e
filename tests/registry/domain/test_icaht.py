"""ICAHT grade (Rejeski et al. Blood 2023;142:865-877), walked boundary by boundary, with the
decisions of docs/DOMAIN_DECISIONS.md "ICAHT" (gaps, edges, one day's values)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.domain.icaht import (
    LATE_LAST_DAY,
    AncCount,
    IcahtResult,
    IcahtRule,
    early_grade_of,
    early_icaht,
    followed_to,
    late_icaht,
    lowest_of_each_day,
    results_from_dates,
)

HIGH = 3000.0  # a recovered count


def daily(values: list[float], start: int = 0) -> list[AncCount]:
    return [AncCount(start + offset, anc) for offset, anc in enumerate(values)]


def early_with(days_low: int, anc: float = 300.0) -> list[AncCount]:
    """Day 0 recovered, then `days_low` daily counts at `anc`, then recovered to day 40."""
    return daily([HIGH] + [anc] * days_low + [HIGH] * (40 - days_low))


# --- early: the table --------------------------------------------------------------------


@pytest.mark.parametrize(
    "days_500, grade",
    [(0, 0), (1, 1), (6, 1), (7, 2), (13, 2), (14, 3), (30, 3), (31, 4)],
)
def test_early_grade_rises_with_the_days_at_or_below_500(days_500, grade):
    assert early_grade_of(days_500, 0)[0] == grade


@pytest.mark.parametrize("days_100, grade", [(0, 0), (6, 1), (7, 3), (13, 3), (14, 4), (30, 4)])
def test_early_days_at_or_below_100_give_grade_3_from_7_days_and_4_from_14(days_100, grade):
    # a day at or below 100 is a day at or below 500 too
    assert early_grade_of(days_100, days_100)[0] == grade


@pytest.mark.parametrize(
    "days_500, days_100, rule",
    [
        (14, 7, IcahtRule.EARLY_ANC_100_DAYS),  # grade 3 both ways: the deeper names it
        (20, 2, IcahtRule.EARLY_ANC_500_DAYS),
        (31, 14, IcahtRule.EARLY_NEVER_ABOVE_500),
        (0, 0, IcahtRule.EARLY_NO_NEUTROPENIA),
    ],
)
def test_early_rule_names_the_criterion_that_gave_the_grade(days_500, days_100, rule):
    assert early_grade_of(days_500, days_100)[1] == rule


@pytest.mark.parametrize(
    "days_low, grade", [(0, 0), (1, 1), (6, 1), (7, 2), (13, 2), (14, 3), (30, 3)]
)
def test_early_grade_from_a_daily_series_at_300(days_low, grade):
    result = early_icaht(early_with(days_low))
    assert (result.grade, result.params["days_500"]) == (grade, days_low)


@pytest.mark.parametrize("days_low, grade", [(6, 1), (7, 3), (13, 3), (14, 4)])
def test_early_grade_from_a_daily_series_at_50(days_low, grade):
    assert early_icaht(early_with(days_low, anc=50.0)).grade == grade


@pytest.mark.parametrize("anc, days", [(500.0, 5), (500.1, 0), (100.0, 5), (99.0, 5)])
def test_early_thresholds_include_500_and_100_themselves(anc, days):
    result = early_icaht(early_with(5, anc=anc))
    assert result.params["days_500"] == days


def test_early_100_is_counted_at_or_below_100():
    assert early_icaht(early_with(7, anc=100.0)).params["days_100"] == 7
    assert early_icaht(early_with(7, anc=101.0)).params["days_100"] == 0


def test_never_above_500_in_days_0_to_30_is_grade_4():
    result = early_icaht(daily([400.0] * 31 + [HIGH] * 5))
    assert (result.grade, result.rule) == (4, IcahtRule.EARLY_NEVER_ABOVE_500)


def test_a_day_0_count_above_500_makes_30_days_grade_3_not_never_above_500():
    result = early_icaht(daily([HIGH] + [400.0] * 30 + [HIGH] * 5))
    assert (result.grade, result.rule) == (3, IcahtRule.EARLY_ANC_500_DAYS)


def test_only_days_0_to_30_are_counted():
    result = early_icaht(daily([HIGH] * 31 + [50.0] * 20 + [HIGH] * 5))
    assert (result.grade, result.params["days_500"]) == (0, 0)


def test_a_count_before_day_0_is_not_counted():
    series = [AncCount(-3, 50.0), AncCount(-2, 50.0), *daily([HIGH] * 35)]
    assert early_icaht(series).grade == 0


# --- early: short recoveries and gaps ----------------------------------------------------


@pytest.mark.parametrize("recovery_days, days_500", [(1, 9), (2, 10), (3, 8)])
def test_a_recovery_shorter_than_3_days_counts_as_neutropenia(recovery_days, days_500):
    series = daily([HIGH] + [300.0] * 3 + [HIGH] * recovery_days + [300.0] * 5 + [HIGH] * 30)
    assert early_icaht(series).params["days_500"] == days_500


def test_a_short_recovery_at_the_end_of_the_series_is_not_filled():
    series = daily([HIGH] + [300.0] * 29 + [HIGH] * 2)
    result = early_icaht(series)
    assert result.params["days_500"] == 29  # day 31 is the last count: recovery not disproved


@pytest.mark.parametrize("gap, graded", [(7, True), (8, False)])
def test_days_between_two_counts_a_week_apart_on_one_side_take_that_side(gap, graded):
    days = range(0, 31 + gap, gap)
    result = early_icaht([AncCount(day, HIGH) for day in days])
    assert result.gradable is graded


def test_days_between_two_low_counts_a_week_apart_count_as_neutropenia():
    series = [AncCount(0, HIGH), AncCount(1, 300.0), AncCount(8, 300.0), *daily([HIGH] * 30, 9)]
    assert early_icaht(series).params["days_500"] == 8


def test_days_between_a_low_and_a_high_count_are_unsettled_and_can_leave_it_not_gradable():
    series = [AncCount(0, HIGH), AncCount(5, 300.0), AncCount(12, HIGH), *daily([HIGH] * 30, 13)]
    result = early_icaht(series)
    assert result.grade is None
    assert result.rule == IcahtRule.EARLY_DAYS_MISSING
    # day 5 alone is grade 1; days 1-4 and 6-11 could make it 13 days at or below 500
    assert (result.lowest, result.highest) == (1, 2)
    assert result.params["days"] == "1-4, 6-11"


def test_unsettled_days_that_cannot_change_the_grade_still_grade_it():
    # 14 days at or below 100 are grade 4 already; what the gap hides cannot add to it
    series = [*daily([HIGH] + [50.0] * 14), AncCount(25, HIGH), AncCount(40, HIGH)]
    assert early_icaht(series).grade == 4


def test_a_series_that_stops_before_day_30_is_not_gradable_until_the_grade_is_settled():
    result = early_icaht(daily([HIGH] * 10))
    assert (result.grade, result.rule) == (None, IcahtRule.EARLY_DAYS_MISSING)
    assert result.params["days"] == "10-30"


def test_counts_after_day_30_settle_the_days_before_it():
    series = [*daily([HIGH] * 27), AncCount(33, HIGH)]
    assert early_icaht(series).grade == 0


def test_no_count_in_days_0_to_30_is_not_gradable():
    result = early_icaht([AncCount(45, 200.0)])
    assert (result.grade, result.rule) == (None, IcahtRule.EARLY_NO_VALUES)


def test_rows_without_an_anc_are_ignored():
    series = [*early_with(7), AncCount(3, None), AncCount(50, None)]
    assert early_icaht(series).grade == 2


# --- one day's values --------------------------------------------------------------------


def test_two_values_of_one_day_count_as_the_lowest():
    assert lowest_of_each_day([AncCount(3, 900.0), AncCount(3, 400.0)]) == {3: 400.0}


def test_a_second_higher_value_of_a_neutropenic_day_does_not_shorten_the_neutropenia():
    series = [*early_with(7), AncCount(4, HIGH)]
    assert early_icaht(series).grade == 2


# --- early: the end of the follow-up (a death, a relapse, the next therapy) ---------------


def test_a_death_ends_the_early_days_counted_on_its_day():
    # ANC at or below 100 from day 0 to the death on day 12: 13 days, grade 3 (7-13 days)
    result = early_icaht(daily([50.0] * 13), death_day=12)
    assert (result.grade, result.rule) == (3, IcahtRule.EARLY_ANC_100_DAYS)
    assert result.params == {"days_500": 13, "days_100": 13, "until_day": 12}


def test_without_the_death_the_same_series_is_not_gradable():
    result = early_icaht(daily([50.0] * 13))
    assert (result.grade, result.rule) == (None, IcahtRule.EARLY_DAYS_MISSING)
    assert (result.lowest, result.highest) == (3, 4)


@pytest.mark.parametrize("death_day, grade", [(12, 3), (13, 4)])
def test_days_at_or_below_100_to_a_death_grade_as_the_table_says(death_day, grade):
    assert early_icaht(daily([50.0] * (death_day + 1)), death_day=death_day).grade == grade


def test_never_above_500_needs_the_whole_window_so_a_death_grades_by_the_days():
    # 300/uL from day 0 to a death on day 20: 21 days at or below 500 (grade 3), not grade 4
    result = early_icaht(daily([300.0] * 21), death_day=20)
    assert (result.grade, result.rule) == (3, IcahtRule.EARLY_ANC_500_DAYS)


def test_a_relapse_ends_the_early_days_counted_the_day_before_and_later_counts_are_not_read():
    # recovered on day 0, 300/uL on days 1-9, relapse on day 10, 50/uL after it
    series = daily([HIGH] + [300.0] * 9 + [50.0] * 25)
    result = early_icaht(series, censor_day=10)
    assert (result.grade, result.rule) == (2, IcahtRule.EARLY_ANC_500_DAYS)
    assert result.params == {"days_500": 9, "days_100": 0, "until_day": 9}


def test_a_series_that_stops_before_the_death_is_still_not_gradable_when_it_matters():
    # counts to day 5, death on day 12: days 6-12 could be above 500 (grade 1) or at or below
    # 100 (7 days: grade 3)
    result = early_icaht(daily([HIGH] + [300.0] * 5), death_day=12)
    assert (result.grade, result.rule) == (None, IcahtRule.EARLY_DAYS_MISSING)
    assert result.params == {"days": "6-12", "lowest": 1, "highest": 3, "until_day": 12}


@pytest.mark.parametrize("death_day, until", [(29, {"until_day": 29}), (30, {}), (31, {})])
def test_a_death_from_day_30_leaves_the_whole_early_window(death_day, until):
    result = early_icaht(daily([HIGH] * (death_day + 1)), death_day=death_day)
    assert (result.grade, result.params) == (0, {"days_500": 0, "days_100": 0, **until})


def test_a_relapse_on_day_0_leaves_no_early_day_to_count():
    result = early_icaht(daily([300.0] * 10), censor_day=0)
    assert (result.grade, result.rule) == (None, IcahtRule.EARLY_NO_WINDOW)
    assert result.params == {"censor_day": 0}


def test_a_death_on_day_0_counts_day_0():
    result = early_icaht(daily([50.0]), death_day=0)
    assert (result.grade, result.params["until_day"]) == (1, 0)


@pytest.mark.parametrize(
    "censor_day, death_day, followed",
    [(None, None, None), (10, None, 9), (None, 10, 10), (10, 10, 9), (11, 10, 10), (12, 10, 10)],
)
def test_the_follow_up_ends_the_day_before_a_relapse_or_on_the_day_of_a_death(
    censor_day, death_day, followed
):
    assert followed_to(censor_day, death_day) == followed


def test_results_from_dates_end_both_windows_at_the_death():
    day0 = date(2024, 1, 1)
    values = [(day0 + timedelta(days=n), 50.0) for n in range(13)]
    values += [(day0 + timedelta(days=n), 50.0) for n in (40, 50)]
    early, late = results_from_dates(day0, values, [], day0 + timedelta(days=52))
    assert late.grade == 4  # days 31-52, observed to the death
    assert early.rule == IcahtRule.EARLY_DAYS_MISSING  # days 13-30 have no count
    early, late = results_from_dates(day0, values[:13], [], day0 + timedelta(days=12))
    assert (early.grade, early.params["until_day"]) == (3, 12)
    assert (late.rule, late.params) == (IcahtRule.LATE_NO_WINDOW, {"censor_day": 12})


# --- late ICAHT --------------------------------------------------------------------------


def late(*values: tuple[int, float]) -> IcahtResult:
    return late_icaht([AncCount(day, anc) for day, anc in values])


@pytest.mark.parametrize(
    "anc, grade",
    [
        (1501.0, 0),
        (1500.0, 1),
        (1001.0, 1),
        (1000.0, 2),
        (501.0, 2),
        (500.0, 3),
        (101.0, 3),
        (100.0, 4),
        (0.0, 4),
    ],
)
def test_late_grade_is_set_by_two_values_at_or_below_each_threshold(anc, grade):
    assert late((40, anc), (60, anc), (90, HIGH)).grade == grade


def test_late_grade_needs_two_values_at_or_below_the_threshold():
    # one value at 50, recovered after it: transient, so it grades at the second-lowest value
    result = late((40, 50.0), (60, 1200.0), (90, 1400.0))
    assert (result.grade, result.rule) == (1, IcahtRule.LATE_LOWEST_ANC)
    assert result.params == {"threshold": 1500.0, "values": 3, "lowest_anc": 50.0}


def test_late_without_cytopenia_is_grade_0():
    result = late((45, HIGH), (85, HIGH))
    assert (result.grade, result.rule) == (0, IcahtRule.LATE_NO_CYTOPENIA)


def test_a_single_low_last_value_awaits_its_confirmation():
    result = late((40, 1200.0), (60, 1300.0), (90, 400.0))
    assert (result.grade, result.rule) == (None, IcahtRule.LATE_UNCONFIRMED)
    assert (result.lowest, result.highest) == (1, 3)
    assert result.params == {"day": 90, "anc": 400.0, "threshold": 500.0}


@pytest.mark.parametrize("values", [(), ((50, 200.0),)])
def test_fewer_than_two_values_after_day_30_are_not_gradable(values):
    result = late(*values)
    assert (result.grade, result.rule) == (None, IcahtRule.LATE_TOO_FEW_VALUES)


@pytest.mark.parametrize("last_count, graded", [(79, False), (80, True), (100, True)])
def test_late_window_is_observed_with_a_count_from_day_80(last_count, graded):
    result = late((40, HIGH), (last_count, HIGH))
    assert result.gradable is graded
    if not graded:
        assert result.rule == IcahtRule.LATE_TAIL_MISSING


def test_confirmed_grade_4_needs_no_later_count():
    assert late((35, 50.0), (40, 80.0)).grade == 4


@pytest.mark.parametrize("day, counted", [(30, False), (31, True), (100, True), (101, False)])
def test_late_window_is_day_31_to_day_100(day, counted):
    result = late((day, 50.0), (85, 50.0), (95, HIGH))
    assert (result.grade == 4) is counted


def test_a_relapse_ends_the_late_window_the_day_before():
    values = [AncCount(40, HIGH), AncCount(59, HIGH), AncCount(60, 50.0), AncCount(65, 50.0)]
    assert late_icaht(values, censor_day=60).grade == 0
    assert late_icaht(values, censor_day=66).grade == 4


def test_a_relapse_before_day_32_leaves_no_late_window():
    result = late_icaht([AncCount(40, 50.0), AncCount(50, 50.0)], censor_day=31)
    assert (result.grade, result.rule) == (None, IcahtRule.LATE_NO_WINDOW)


def test_a_death_ends_the_late_window_on_its_day():
    # counts monthly to a death on day 60: observed to its end, graded from what was seen
    values = [AncCount(40, 300.0), AncCount(60, 300.0)]
    assert late_icaht(values, death_day=60).grade == 3
    result = late_icaht(values)  # without it, the window to day 100 is not observed
    assert (result.grade, result.rule) == (None, IcahtRule.LATE_TAIL_MISSING)


@pytest.mark.parametrize("death_day, rule", [(30, IcahtRule.LATE_NO_WINDOW), (31, None)])
def test_a_death_by_day_30_leaves_no_late_window(death_day, rule):
    result = late_icaht([AncCount(31, 50.0)], death_day=death_day)
    if rule is None:
        assert result.rule == IcahtRule.LATE_TOO_FEW_VALUES  # day 31 alone: one count
    else:
        assert (result.rule, result.params) == (rule, {"censor_day": death_day})


def test_the_late_window_never_passes_day_100():
    values = [AncCount(40, HIGH), AncCount(90, HIGH), AncCount(120, 50.0), AncCount(130, 50.0)]
    assert late_icaht(values, censor_day=200).grade == 0
    assert LATE_LAST_DAY == 100


# --- properties --------------------------------------------------------------------------

counts = st.lists(
    st.builds(
        AncCount,
        day=st.integers(min_value=0, max_value=110),
        anc=st.sampled_from([0.0, 50.0, 100.0, 101.0, 300.0, 500.0, 800.0, 1000.0, 1400.0, 1500.0])
        | st.floats(min_value=0, max_value=20000, allow_nan=False),
    ),
    max_size=60,
)
graders = st.sampled_from(
    [
        early_icaht,
        late_icaht,
        partial(early_icaht, death_day=12),
        partial(early_icaht, censor_day=20),
        partial(late_icaht, death_day=60),
        partial(late_icaht, censor_day=70, death_day=90),
    ]
)


@settings(max_examples=200, deadline=None)
@given(counts, st.randoms(use_true_random=False), graders)
def test_grade_is_invariant_to_row_order(series, random, grader):
    shuffled = list(series)
    random.shuffle(shuffled)
    assert grader(shuffled) == grader(series)


@settings(max_examples=200, deadline=None)
@given(counts, st.data(), graders)
def test_lowering_a_value_never_lowers_the_grades_the_series_allows(series, data, grader):
    if not series:
        return
    index = data.draw(st.integers(min_value=0, max_value=len(series) - 1))
    lowered = list(series)
    row = lowered[index]
    lowered[index] = AncCount(row.day, data.draw(st.floats(min_value=0, max_value=row.anc)))
    before, after = grader(series), grader(lowered)
    assert after.lowest >= before.lowest
    assert after.highest >= before.highest


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(min_value=0, max_value=110), graders)
def test_adding_a_value_at_or_below_every_other_never_lowers_the_grade(series, day, grader):
    lowest = min((row.anc for row in series if row.anc is not None), default=20000.0)
    before, after = grader(series), grader([*series, AncCount(day, lowest)])
    assert after.lowest >= before.lowest
    if before.gradable and after.gradable:
        assert after.grade >= before.grade


@settings(max_examples=200, deadline=None)
@given(counts, graders)
def test_a_row_entered_twice_changes_nothing(series, grader):
    assert grader(series + series) == grader(series)


@settings(max_examples=200, deadline=None)
@given(counts, graders)
def test_a_grade_is_given_exactly_when_the_counts_allow_one_grade(series, grader):
    result = grader(series)
    assert 0 <= result.lowest <= result.highest <= 4
    assert result.gradable is (result.lowest == result.highest)
    if result.gradable:
        assert result.grade == result.lowest


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=20000), min_size=31, max_size=31))
def test_a_daily_series_of_days_0_to_30_with_a_recovery_after_is_always_gradable(values):
    assert early_icaht(daily([*values, HIGH, HIGH, HIGH])).gradable
