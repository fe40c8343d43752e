"""Follow-up schedule, visit states and loss to follow-up (DOMAIN.md "Follow-up schedule").

Visits count from day 0 (first day of blinatumomab cycle 1, or the CAR-T infusion): day 28
(21-35), day 100 (80-120), month 6 (150-210), month 12 (330-400), then every year k >= 2 at
365*k +- 45 days. Windows are inclusive at both ends and do not overlap.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from itertools import count

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


@cache
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


# The schedule as far as it has been needed, and the day each of its windows opens: the visits
# are computed once per process, and a visit is found by bisection (the windows are in order).
_KNOWN_VISITS: list[Visit] = []
_KNOWN_OPENS: list[int] = []
_KNOWN_CLOSES: list[int] = []
_MORE_VISITS = all_visits()


def _known_up_to(until_day: int) -> int:
    """How many visits open on or before `until_day`, with at least one more known after them."""
    while not _KNOWN_OPENS or _KNOWN_OPENS[-1] <= until_day:
        visit = next(_MORE_VISITS)
        _KNOWN_VISITS.append(visit)
        _KNOWN_OPENS.append(visit.opens_day)
        _KNOWN_CLOSES.append(visit.closes_day)
    return bisect_right(_KNOWN_OPENS, until_day)


def schedule(until_day: int) -> list[Visit]:
    """All visits whose window opens on or before `until_day` (days after day 0)."""
    return _KNOWN_VISITS[: _known_up_to(until_day)]


def next_visit_after(until_day: int) -> Visit:
    """The first visit whose window opens after `until_day`."""
    return _KNOWN_VISITS[_known_up_to(until_day)]


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
    listed = _known_up_to(days_so_far) + 1  # the visits opened so far, and the next one
    statuses = []
    for visit in _KNOWN_VISITS[:listed]:
        opens = day0 + timedelta(days=visit.opens_day)
        closes = day0 + timedelta(days=visit.closes_day)
        first = bisect_left(contact_dates, opens)  # the earliest contact on or after opening
        contact = contact_dates[first] if first < len(contact_dates) else None
        if contact is not None and contact > closes:
            contact = None
        state = visit_state(opens=opens, closes=closes, contact=contact, today=today, death=death)
        statuses.append(VisitStatus(visit, opens, closes, state, contact))
    return statuses


@dataclass(frozen=True)
class WorklistVisits:
    """What a nurse's worklist shows for one treatment of a living patient (DOMAIN.md)."""

    due: VisitStatus | None = None  # the visit whose window is open today, with no contact yet
    overdue: VisitStatus | None = None  # the last visit missed since the last contact
    lost: VisitStatus | None = None  # lost to follow-up: the last visit missed


def worklist_visits(*, day0: date, contacts: Iterable[date], today: date) -> WorklistVisits:
    """The worklist's visits of one treatment of a living patient, without listing them all.

    The same as reading `visit_statuses` (tests/registry/domain/test_followup_worklist.py
    checks it on varied data): when the patient is lost to follow-up (`lost_to_follow_up`,
    with day 0 as the last contact when there is none), the last overdue visit; otherwise
    the visit due now, and the last overdue visit whose window opened after the last contact.
    Windows are in order and do not overlap, so only the last opened and the last closed
    visits, and for a lost patient the closed visits from the last backwards, are looked at.
    """
    contact_dates = sorted(set(contacts))
    last_seen = contact_dates[-1] if contact_dates else day0
    days_so_far = (today - day0).days
    opened = _known_up_to(days_so_far)  # visits [0, opened) have opened
    closed = bisect_left(_KNOWN_CLOSES, days_so_far, 0, opened)  # [0, closed) have closed

    def status(index: int) -> VisitStatus:
        visit = _KNOWN_VISITS[index]
        opens = day0 + timedelta(days=visit.opens_day)
        closes = day0 + timedelta(days=visit.closes_day)
        first = bisect_left(contact_dates, opens)
        contact = contact_dates[first] if first < len(contact_dates) else None
        if contact is not None and contact > closes:
            contact = None
        state = visit_state(opens=opens, closes=closes, contact=contact, today=today, death=None)
        return VisitStatus(visit, opens, closes, state, contact)

    if lost_to_follow_up(last_contact=last_seen, today=today, alive=True):
        for index in range(closed - 1, -1, -1):
            missed = status(index)
            if missed.state == VisitState.OVERDUE:
                return WorklistVisits(lost=missed)
        return WorklistVisits()
    due = overdue = None
    if opened > closed:  # the last opened visit's window is open today
        current = status(opened - 1)
        if current.state == VisitState.DUE:
            due = current
    if closed:
        # Every visit opened after the last contact has no contact; the last closed one is
        # the last of them, if it opened after the last contact.
        last_closed = status(closed - 1)
        if last_seen < last_closed.opens and last_closed.state == VisitState.OVERDUE:
            overdue = last_closed
    return WorklistVisits(due=due, overdue=overdue)


def lost_to_follow_up(*, last_contact: date | None, today: date, alive: bool) -> bool:
    """Alive, and the last contact was more than 180 days before today (DOMAIN.md).

    With no contact at all there is nothing to measure from: callers pass day 0 as the last
    contact when the patient has never been seen since.
    """
    if not alive or last_contact is None:
        return False
    return (today - last_contact).days > LOST_TO_FOLLOW_UP_DAYS
