"""registry.domain.followup.worklist_visits gives what reading visit_statuses gives."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from registry.domain.followup import (
    VisitState,
    lost_to_follow_up,
    visit_statuses,
    worklist_visits,
)

DAY0 = date(2016, 3, 1)


def read_from_the_statuses(*, day0: date, contacts: list[date], today: date):
    """The worklist's reading of the full list of statuses (registry.selectors before #8)."""
    statuses = visit_statuses(day0=day0, contacts=contacts, today=today)
    last_seen = max(contacts, default=day0)
    if lost_to_follow_up(last_contact=last_seen, today=today, alive=True):
        missed = [s for s in statuses if s.state == VisitState.OVERDUE]
        return None, None, missed[-1] if missed else None
    due = [s for s in statuses if s.state == VisitState.DUE]
    assert len(due) <= 1  # the windows do not overlap
    missed = [s for s in statuses if s.state == VisitState.OVERDUE and last_seen < s.opens]
    return (due[0] if due else None), (missed[-1] if missed else None), None


def varied_cases(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        today = DAY0 + timedelta(days=rng.randint(-30, 4000))
        pattern = rng.choice(["none", "regular", "random", "late", "dense", "before_day0"])
        contacts: list[date] = []
        span = max((today - DAY0).days, 1)
        if pattern == "regular":  # a contact at the target of most visits
            for target in (28, 100, 182, 365, *(365 * k for k in range(2, 12))):
                if target <= span and rng.random() < 0.8:
                    contacts.append(DAY0 + timedelta(days=target + rng.randint(-50, 50)))
        elif pattern == "random":
            contacts = [
                DAY0 + timedelta(days=rng.randint(0, span)) for _ in range(rng.randint(1, 8))
            ]
        elif pattern == "late":  # contacts after today (a clock set back)
            contacts = [today + timedelta(days=rng.randint(1, 400)) for _ in range(2)]
        elif pattern == "dense":
            contacts = [DAY0 + timedelta(days=d) for d in range(0, span, rng.randint(20, 200))]
        elif pattern == "before_day0":
            contacts = [DAY0 - timedelta(days=rng.randint(1, 100))]
        yield today, contacts


@pytest.mark.parametrize("seed", range(5))
def test_worklist_visits_read_the_same_visits_as_the_full_list_of_statuses(seed):
    for today, contacts in varied_cases(seed, 2000):
        fast = worklist_visits(day0=DAY0, contacts=contacts, today=today)
        expected = read_from_the_statuses(day0=DAY0, contacts=contacts, today=today)
        assert (fast.due, fast.overdue, fast.lost) == expected, (today, contacts)


@pytest.mark.parametrize(
    "today_day, contact_days, due, overdue, lost",
    [
        (25, [], "day28", None, None),
        (100, [], "day100", "day28", None),
        (100, [30], "day100", None, None),
        (130, [30], None, "day100", None),
        (130, [30, 100], None, None, None),
        (250, [30, 100], None, "month6", None),
        (300, [], None, None, "month6"),  # 300 days without contact: lost, last missed
        (300, [30, 100, 180], None, None, None),
        (800, [30, 100, 180, 365], None, None, "year2"),
        (600, [30, 100, 180, 365], None, None, None),  # lost, but no visit missed yet
        (600, [100, 180, 365], None, None, "day28"),
    ],
)
def test_worklist_visits_boundaries(today_day, contact_days, due, overdue, lost):
    visits = worklist_visits(
        day0=DAY0,
        contacts=[DAY0 + timedelta(days=d) for d in contact_days],
        today=DAY0 + timedelta(days=today_day),
    )
    names = [v.visit.name if v else None for v in (visits.due, visits.overdue, visits.lost)]
    assert names == [due, overdue, lost]
