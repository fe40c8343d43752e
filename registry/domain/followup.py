"""Follow-up schedule, visit states and loss to follow-up (DOMAIN.md "Follow-up schedule").

Visits count from day 0 (first day of blinatumomab cycle 1, or the CAR-T infusion): day 28
(21-35), day 100 (80-120), month 6 (150-210), month 12 (330-400), then every year k >= 2 at
365*k +- 45 days. Windows are inclusive at both ends and do not overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from itertools import count, takewhile

DAYS_PER_MONTH = 30.4375  # DOMAIN.md: times shown in months use 365.25 / 12 days
DAYS_PER_YEAR = 365
YEARLY_WINDOW_HALF_WIDTH_DAYS = 45
FIRST_YEARLY_VISIT = 2

# DOMAIN.md: a patient alive with no contact for more than 180 days is lost to follow-up.
LOST_TO_FOLLOW_UP_DAYS = 180


@dataclass(frozen=True)
class Visit:
    name: str  # "day28", "day100", "month6", "month12", "year2", "year3", ...
    target_day: int
    opens_day: int
    closes_day: int


# DOMAIN.md: the fixed visits of the first year.
FIRST_YEAR_VISITS: tuple[Visit, ...] = (
    Visit("day28", 28, 21, 35),
    Visit("day100", 100, 80, 120),
    Visit("month6", 182, 150, 210),
    Visit("month12", 365, 330, 400),
)


class VisitState(StrEnum):
    DONE = "done"
    DUE = "due"
    OVERDUE = "overdue"
    UPCOMING = "upcoming"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class VisitStatus:
    visit: Visit
    opens: date
    closes: date
    state: VisitState
    contact: date | None  # the contact that fulfilled the visit


def yearly_visit(year: int) -> Visit:
    target = DAYS_PER_YEAR * year
    return Visit(
        name=f"year{year}",
        target_day=target,
        opens_day=target - YEARLY_WINDOW_HALF_WIDTH_DAYS,
        closes_day=target + YEARLY_WINDOW_HALF_WIDTH_DAYS,
    )


def all_visits() -> Iterator[Visit]:
    """The endless schedule, in order."""
    yield from FIRST_YEAR_VISITS
    for year in count(FIRST_YEARLY_VISIT):
        yield yearly_visit(year)


def schedule(until_day: int) -> list[Visit]:
    """All visits whose window opens on or before `until_day` (days after day 0)."""
    return list(takewhile(lambda visit: visit.opens_day <= until_day, all_visits()))


def next_visit_after(until_day: int) -> Visit:
    """The first visit whose window opens after `until_day`."""
    return next(visit for visit in all_visits() if visit.opens_day > until_day)


def visit_state(
    *, opens: date, closes: date, contact: date | None, today: date, death: date | None
) -> VisitState:
    if contact is not None:
        return VisitState.DONE
    # A visit whose window had not closed by the patient's death was never missed.
    if death is not None and death <= closes:
        return VisitState.NOT_APPLICABLE
    if today < opens:
        return VisitState.UPCOMING
    if today <= closes:
        return VisitState.DUE
    return VisitState.OVERDUE


def visit_statuses(
    *, day0: date, contacts: Iterable[date], today: date, death: date | None = None
) -> list[VisitStatus]:
    """Every visit whose window has opened by `today`, and the next one, with its state.

    A visit is done when any contact falls inside its window (the earliest such contact is
    reported); otherwise it is not applicable when the patient died before the window closed,
    else due while the window is open, upcoming before it opens, and overdue after it closes.
    """
    contact_dates = sorted(set(contacts))
    days_so_far = (today - day0).days
    visits = [*schedule(days_so_far), next_visit_after(days_so_far)]
    statuses = []
    for visit in visits:
        opens = day0 + timedelta(days=visit.opens_day)
        closes = day0 + timedelta(days=visit.closes_day)
        contact = next((c for c in contact_dates if opens <= c <= closes), None)
        state = visit_state(opens=opens, closes=closes, contact=contact, today=today, death=death)
        statuses.append(VisitStatus(visit, opens, closes, state, contact))
    return statuses


def lost_to_follow_up(*, last_contact: date | None, today: date, alive: bool) -> bool:
    """Alive, and the last contact was more than 180 days before today (DOMAIN.md).

    With no contact at all there is nothing to measure from: callers pass day 0 as the last
    contact when the patient has never been seen since.
    """
    if not alive or last_contact is None:
        return False
    return (today - last_contact).days > LOST_TO_FOLLOW_UP_DAYS


def month_of(days: int) -> float:
    """Days after day 0 shown as months (DOMAIN.md: 1 month = 30.4375 days)."""
    return days / DAYS_PER_MONTH
