"""EHA/EBMT consensus grade of immune effector cell-associated hematotoxicity (DOMAIN.md "ICAHT
grade").

Source: Rejeski K et al. Immune effector cell-associated hematotoxicity: EHA/EBMT consensus
grading and best practice recommendations. Blood 2023;142:865-877 (grading table): early ICAHT
(days 0-30) from how long the ANC stays at or below 500/uL and 100/uL; late ICAHT (after day 30)
from the lowest ANC, confirmed by a second value. The consensus counts recoveries shorter than
three days as days of neutropenia ("nonstable count recovery", restated by the same group for
thrombocytopenia, Blood Adv 2024), and counts the days to the end of the follow-up: "censoring at
the time of disease progression, subsequent line of therapy, or death" (the same restatement).

Where the consensus is silent (the days between two counts, the edges of the series, the values
of one day, what "too sparse" means), docs/DOMAIN_DECISIONS.md "ICAHT" says what is done here.
The rule is never a guess: a day without a count that could change the grade either way makes
the series "not gradable", with the days to record.

Days are counted from day 0 (`day` = date - day 0); an ANC is in cells/uL.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

EARLY_FIRST_DAY = 0
EARLY_LAST_DAY = 30
EARLY_WINDOW_DAYS = EARLY_LAST_DAY - EARLY_FIRST_DAY + 1  # 31
LATE_FIRST_DAY = 31
LATE_LAST_DAY = 100

# Rejeski 2023: the two depths of early neutropenia.
ANC_500 = 500.0
ANC_100 = 100.0

# Rejeski 2023, early ICAHT: (at least this many days, grade), deepest first.
EARLY_DAYS_AT_OR_BELOW_500: tuple[tuple[int, int], ...] = ((14, 3), (7, 2), (1, 1))
EARLY_DAYS_AT_OR_BELOW_100: tuple[tuple[int, int], ...] = ((14, 4), (7, 3))

# Rejeski 2023, late ICAHT: (ANC at or below, grade), deepest first; two values needed.
LATE_THRESHOLDS: tuple[tuple[float, int], ...] = ((100.0, 4), (500.0, 3), (1000.0, 2), (1500.0, 1))
LATE_VALUES_TO_CONFIRM = 2

# Rejeski 2023: a recovery shorter than 3 days is counted as days of neutropenia.
STABLE_RECOVERY_DAYS = 3

# DOMAIN_DECISIONS.md: between two counts at most a week apart on the same side of a threshold,
# the days in between are on that side (daily counts as inpatients, weekly after discharge).
MAX_GAP_DAYS = 7

# DOMAIN_DECISIONS.md: the late window counts as observed to its end with a count in its last
# 20 days (day 80-100 is the day-100 follow-up visit's window, DOMAIN.md).
LATE_TAIL_DAYS = 20

SEVERE_FROM_GRADE = 3


class IcahtRule(StrEnum):
    """What gave the grade, or why there is none: a machine key, turned into a sentence for
    the nurse (in her language) beside the models."""

    EARLY_NO_NEUTROPENIA = "early_no_neutropenia"
    EARLY_ANC_500_DAYS = "early_anc_500_days"
    EARLY_ANC_100_DAYS = "early_anc_100_days"
    EARLY_NEVER_ABOVE_500 = "early_never_above_500"
    EARLY_NO_VALUES = "early_no_values"
    EARLY_NO_WINDOW = "early_no_window"
    EARLY_DAYS_MISSING = "early_days_missing"
    LATE_NO_CYTOPENIA = "late_no_cytopenia"
    LATE_LOWEST_ANC = "late_lowest_anc"
    LATE_NO_WINDOW = "late_no_window"
    LATE_TOO_FEW_VALUES = "late_too_few_values"
    LATE_TAIL_MISSING = "late_tail_missing"
    LATE_UNCONFIRMED = "late_unconfirmed"


@dataclass(frozen=True)
class AncCount:
    day: int  # days since day 0
    anc: float | None  # cells/uL; None: not measured that day (a row holding other values)


@dataclass(frozen=True)
class IcahtResult:
    """A grade 0-4, or None ("not gradable") with the reason; `lowest` and `highest` are the
    grades the counts still allow (equal when graded)."""

    grade: int | None
    rule: IcahtRule
    lowest: int
    highest: int
    params: Mapping[str, int | float | str] = field(default_factory=dict)

    @property
    def gradable(self) -> bool:
        return self.grade is not None

    @property
    def severe(self) -> bool:
        return self.grade is not None and self.grade >= SEVERE_FROM_GRADE


def lowest_of_each_day(counts: Iterable[AncCount]) -> dict[int, float]:
    """One ANC per day: the lowest of the day's values (DOMAIN_DECISIONS.md)."""
    lowest: dict[int, float] = {}
    for count in counts:
        if count.anc is None:
            continue
        anc = float(count.anc)
        lowest[count.day] = min(anc, lowest.get(count.day, anc))
    return lowest


def _day_ranges(days: Iterable[int]) -> str:
    """'3-5, 12, 20-30': the days, as ranges of consecutive days."""
    ranges: list[list[int]] = []
    for day in sorted(days):
        if ranges and day == ranges[-1][1] + 1:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


# --- early ICAHT -------------------------------------------------------------------------


def _at_or_below(
    lowest: Mapping[int, float], threshold: float, last_day: int
) -> tuple[list[bool], list[bool]]:
    """For days 0..last_day, whether the ANC was at or below the threshold: the fewest days the
    counts allow, and the most (a day without a count that the counts do not settle is not in
    the first and is in the second)."""
    measured = sorted(lowest)
    below = {day: lowest[day] <= threshold for day in measured}
    fewest = [False] * (last_day + 1)
    most = [False] * (last_day + 1)
    for day in range(last_day + 1):
        index = bisect_left(measured, day)
        following = measured[index] if index < len(measured) else None
        if following == day:
            fewest[day] = most[day] = below[day]
            continue
        previous = measured[index - 1] if index > 0 else None
        if (
            previous is not None
            and following is not None
            and following - previous <= MAX_GAP_DAYS
            and below[previous] == below[following]
        ):
            fewest[day] = most[day] = below[previous]
        else:
            most[day] = True
    return _with_short_recoveries(fewest), _with_short_recoveries(most)


def _with_short_recoveries(at_or_below: list[bool]) -> list[bool]:
    """Rejeski 2023: a recovery of fewer than 3 days between two days of neutropenia counts
    as neutropenia."""
    days = list(at_or_below)
    last_low: int | None = None
    for day, low in enumerate(at_or_below):
        if not low:
            continue
        if last_low is not None and 0 < day - last_low - 1 < STABLE_RECOVERY_DAYS:
            for between in range(last_low + 1, day):
                days[between] = True
        last_low = day
    return days


def early_grade_of(days_at_or_below_500: int, days_at_or_below_100: int) -> tuple[int, IcahtRule]:
    """Rejeski 2023 early ICAHT table: the worse of the two depths; on a tie the deeper one
    names the rule."""
    candidates = [(0, 0, IcahtRule.EARLY_NO_NEUTROPENIA)]
    if days_at_or_below_500 >= EARLY_WINDOW_DAYS:
        candidates.append((4, 3, IcahtRule.EARLY_NEVER_ABOVE_500))
    for days, grade in EARLY_DAYS_AT_OR_BELOW_100:
        if days_at_or_below_100 >= days:
            candidates.append((grade, 2, IcahtRule.EARLY_ANC_100_DAYS))
            break
    for days, grade in EARLY_DAYS_AT_OR_BELOW_500:
        if days_at_or_below_500 >= days:
            candidates.append((grade, 1, IcahtRule.EARLY_ANC_500_DAYS))
            break
    grade, _priority, rule = max(candidates)
    return grade, rule


def followed_to(censor_day: int | None, death_day: int | None) -> int | None:
    """The last day of the treatment's follow-up: the day before a relapse or the next therapy
    (`censor_day`), the day of a death (`death_day`, whose counts are kept); None when neither
    ended it."""
    before = None if censor_day is None else censor_day - 1
    return min((day for day in (before, death_day) if day is not None), default=None)


def _no_window(rule: IcahtRule, censor_day: int | None, death_day: int | None) -> IcahtResult:
    """Not gradable: the follow-up ends before the window's first day. `censor_day` in the
    reason is the day of the event that ends it, the earlier of the two."""
    ended = min(day for day in (censor_day, death_day) if day is not None)
    return IcahtResult(None, rule, lowest=0, highest=4, params={"censor_day": ended})


def early_icaht(
    counts: Iterable[AncCount], *, censor_day: int | None = None, death_day: int | None = None
) -> IcahtResult:
    """Early ICAHT (days 0-30) from a patient's ANC series (any order, any days). A relapse or
    the next therapy (`censor_day`) or a death (`death_day`) before day 30 ends the days
    counted: to the day before the relapse or therapy, to the day of the death (the
    consensus's censoring; docs/DOMAIN_DECISIONS.md). Counts after that are not read, and
    "never above 500 in days 0-30" needs the whole window."""
    followed = followed_to(censor_day, death_day)
    if followed is not None and followed < EARLY_FIRST_DAY:
        return _no_window(IcahtRule.EARLY_NO_WINDOW, censor_day, death_day)
    lowest = {
        day: anc
        for day, anc in lowest_of_each_day(counts).items()
        if day >= 0 and (followed is None or day <= followed)
    }
    window_end = EARLY_LAST_DAY if followed is None else min(EARLY_LAST_DAY, followed)
    if not any(EARLY_FIRST_DAY <= day <= window_end for day in lowest):
        return IcahtResult(None, IcahtRule.EARLY_NO_VALUES, lowest=0, highest=4)
    # Counts after day 30 settle the days before it, and show whether a recovery that
    # straddles day 30 was a stable one.
    last_day = max(window_end, max(lowest))
    fewest_500, most_500 = _at_or_below(lowest, ANC_500, last_day)
    fewest_100, most_100 = _at_or_below(lowest, ANC_100, last_day)
    window = range(EARLY_FIRST_DAY, window_end + 1)
    # a window ended early shows where it ends: "counted to day N" in the reason
    until = {"until_day": window_end} if window_end < EARLY_LAST_DAY else {}

    def days(at_or_below: list[bool]) -> int:
        return sum(at_or_below[day] for day in window)

    lowest_grade, rule = early_grade_of(days(fewest_500), days(fewest_100))
    highest_grade, _rule = early_grade_of(days(most_500), days(most_100))
    if lowest_grade == highest_grade:
        return IcahtResult(
            lowest_grade,
            rule,
            lowest=lowest_grade,
            highest=highest_grade,
            params={"days_500": days(fewest_500), "days_100": days(fewest_100), **until},
        )
    unsettled = [
        day
        for day in window
        if fewest_500[day] != most_500[day] or fewest_100[day] != most_100[day]
    ]
    return IcahtResult(
        None,
        IcahtRule.EARLY_DAYS_MISSING,
        lowest=lowest_grade,
        highest=highest_grade,
        params={
            "days": _day_ranges(unsettled),
            "lowest": lowest_grade,
            "highest": highest_grade,
            **until,
        },
    )


# --- late ICAHT --------------------------------------------------------------------------


def late_last_day(censor_day: int | None, death_day: int | None = None) -> int:
    """The late window ends on day 100, or the day before a relapse or the next therapy, or on
    the day of a death."""
    followed = followed_to(censor_day, death_day)
    return LATE_LAST_DAY if followed is None else min(LATE_LAST_DAY, followed)


def late_grade_bounds(window: Mapping[int, float]) -> tuple[int, int, float | None]:
    """The lowest and highest late grade that the window's values (one per day) allow, and the
    threshold of the highest when a single value, the last, is all that reaches it."""
    last_day = max(window)
    lowest = highest = 0
    unconfirmed: float | None = None
    for threshold, grade in LATE_THRESHOLDS:
        reaching = [day for day, anc in window.items() if anc <= threshold]
        if len(reaching) >= LATE_VALUES_TO_CONFIRM:
            lowest = max(lowest, grade)
            highest = max(highest, grade)
        elif reaching == [last_day] and grade > highest:
            # one value at the end of the series: the next count confirms it or shows recovery
            highest, unconfirmed = grade, threshold
    return lowest, highest, unconfirmed


def late_icaht(
    counts: Iterable[AncCount], *, censor_day: int | None = None, death_day: int | None = None
) -> IcahtResult:
    """Late ICAHT (day 31 to day 100, or to the day before `censor_day`: a relapse or the next
    therapy, or to `death_day`) from a patient's ANC series (any order, any days)."""
    last_day = late_last_day(censor_day, death_day)
    if last_day < LATE_FIRST_DAY:
        return _no_window(IcahtRule.LATE_NO_WINDOW, censor_day, death_day)
    window = {
        day: anc
        for day, anc in lowest_of_each_day(counts).items()
        if LATE_FIRST_DAY <= day <= last_day
    }
    if len(window) < LATE_VALUES_TO_CONFIRM:
        return IcahtResult(
            None,
            IcahtRule.LATE_TOO_FEW_VALUES,
            lowest=0,
            highest=4,
            params={"values": len(window), "last_day": last_day},
        )
    lowest, highest, unconfirmed = late_grade_bounds(window)
    lowest_anc = min(window.values())
    last_count = max(window)
    if last_count < last_day - LATE_TAIL_DAYS and lowest < 4:
        return IcahtResult(
            None,
            IcahtRule.LATE_TAIL_MISSING,
            lowest=lowest,
            highest=4,
            params={
                "last_count": last_count,
                "from_day": last_day - LATE_TAIL_DAYS,
                "last_day": last_day,
            },
        )
    if lowest != highest:
        assert unconfirmed is not None
        return IcahtResult(
            None,
            IcahtRule.LATE_UNCONFIRMED,
            lowest=lowest,
            highest=highest,
            params={"day": last_count, "anc": window[last_count], "threshold": unconfirmed},
        )
    if lowest == 0:
        return IcahtResult(
            0,
            IcahtRule.LATE_NO_CYTOPENIA,
            lowest=0,
            highest=0,
            params={"values": len(window), "lowest_anc": lowest_anc},
        )
    threshold = next(threshold for threshold, grade in LATE_THRESHOLDS if grade == lowest)
    return IcahtResult(
        lowest,
        IcahtRule.LATE_LOWEST_ANC,
        lowest=lowest,
        highest=lowest,
        params={
            "threshold": threshold,
            "values": sum(anc <= threshold for anc in window.values()),
            "lowest_anc": lowest_anc,
        },
    )


def stored_fields(early: IcahtResult, late: IcahtResult) -> dict[str, Any]:
    """The treatment's ICAHT fields for these results (registry.models.Treatment.icaht_*)."""
    return {
        "icaht_early_grade": early.grade,
        "icaht_early_rule": early.rule.value,
        "icaht_early_params": dict(early.params),
        "icaht_late_grade": late.grade,
        "icaht_late_rule": late.rule.value,
        "icaht_late_params": dict(late.params),
    }


def results_from_dates(
    day0: date | None,
    anc_values: Iterable[tuple[date, Any]],
    ends: Iterable[date],
    death: date | None = None,
) -> tuple[IcahtResult, IcahtResult]:
    """Early and late ICAHT from (date, ANC) values of a treatment with this day 0, the days
    counted to the day before the first of `ends` (a relapse, a transplant, the next index
    treatment) or to the day of the `death` (docs/DOMAIN_DECISIONS.md "ICAHT")."""
    if day0 is None:
        return early_icaht([]), late_icaht([], censor_day=None)
    counts = [AncCount((when - day0).days, anc) for when, anc in anc_values]
    first_end = min(ends, default=None)
    censor = None if first_end is None else (first_end - day0).days
    died = None if death is None else (death - day0).days
    return (
        early_icaht(counts, censor_day=censor, death_day=died),
        late_icaht(counts, censor_day=censor, death_day=died),
    )
