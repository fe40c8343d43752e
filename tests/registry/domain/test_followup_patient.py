"""registry.domain.followup.follow_up: the one definition of due, overdue and lost (issue #12).

It must read what the full listing of every treatment's visits (`visit_statuses`) says, on
generated patients; and the boundaries are walked one by one.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.domain.followup import (
    FollowUp,
    TreatmentVisit,
    VisitState,
    follow_up,
    last_seen_of,
    lost_to_follow_up,
    visit_statuses,
)

DAY0 = date(2016, 3, 1)


def on(day: int) -> date:
    return DAY0 + timedelta(days=day)


def read_from_the_statuses(
    *, treatments: list[tuple[int, date]], contacts: list[date], today: date
) -> FollowUp:
    """The definition read from the full listing of each treatment's visits."""
    ordered = sorted(treatments, key=lambda t: (t[1], t[0]))
    last_seen = last_seen_of(day0s=[day0 for _, day0 in ordered], contacts=contacts)
    lost = lost_to_follow_up(last_seen=last_seen, today=today)
    due, overdue = [], []
    for position, (key, day0) in enumerate(ordered):
        ends = ordered[position + 1][1] if position + 1 < len(ordered) else None
        for status in visit_statuses(
            day0=day0, contacts=contacts, today=today, ends=ends, last_seen=last_seen
        ):
            if status.state == VisitState.DUE:
                due.append(TreatmentVisit(key, status))
            elif status.state == VisitState.OVERDUE:
                overdue.append(TreatmentVisit(key, status))
    overdue.sort(key=lambda v: (v.status.closes, v.treatment))
    return FollowUp(
        last_seen=last_seen,
        lost=lost,
        due=tuple(due),
        overdue=() if lost else tuple(overdue),
        last_missed=overdue[-1] if lost and overdue else None,
        latest_treatment=ordered[-1][0],
    )


patients = st.fixed_dictionaries(
    {
        "day0s": st.lists(st.integers(0, 3000), min_size=1, max_size=3),
        # contacts around the windows, and some dated after "today" (a clock set back)
        "contacts": st.lists(st.integers(-20, 4200), max_size=12),
        "today": st.integers(-30, 4100),
    }
)


@settings(max_examples=3000, deadline=None)
@given(patients)
def test_follow_up_reads_what_the_full_listing_of_every_visit_says(patient):
    treatments = [(key, on(day)) for key, day in enumerate(patient["day0s"], start=1)]
    contacts = [on(day) for day in patient["contacts"]]
    today = on(patient["today"])
    assert follow_up(treatments=treatments, contacts=contacts, today=today) == (
        read_from_the_statuses(treatments=treatments, contacts=contacts, today=today)
    )


def names(visits) -> list[str]:
    return [visit.status.visit.name for visit in visits]


@pytest.mark.parametrize(
    "today_day, contact_days, due, overdue, lost",
    [
        (25, [], ["day28"], [], False),
        (100, [], ["day100"], ["day28"], False),
        (100, [30], ["day100"], [], False),
        (130, [30], [], ["day100"], False),
        (130, [30, 100], [], [], False),
        (130, [50], [], ["day100"], False),  # day 28 missed, but seen since: not overdue
        (211, [79], [], ["day100", "month6"], False),  # two missed since the last contact
        (250, [30, 100], [], ["month6"], False),
        (300, [], [], [], True),  # 300 days without contact: lost, the overdue are in it
        (300, [30, 100, 180], [], [], False),
        (800, [30, 100, 180, 365], [], [], True),
        (600, [30, 100, 180, 365], [], [], True),  # lost with no visit missed since
        (700, [30, 100, 180, 365], ["year2"], [], True),  # lost, and a visit due now
    ],
)
def test_follow_up_boundaries(today_day, contact_days, due, overdue, lost):
    found = follow_up(
        treatments=[(1, on(0))], contacts=[on(d) for d in contact_days], today=on(today_day)
    )
    assert (names(found.due), names(found.overdue), found.lost) == (due, overdue, lost)


def test_a_lost_patient_whose_window_is_open_is_due_and_lost():
    """AHP-C077 of the demo: last seen inside the year-3 window (done), more than 180 days
    ago, and the year-4 window open today: lost, with the year-4 visit due."""
    last_contact = date(2023, 9, 24)
    day0 = last_contact - timedelta(days=1095)  # the contact on day 1095: year 3 (1050-1140)
    today = date(2024, 10, 31)  # day 1498: inside year 4 (1415-1505)
    found = follow_up(treatments=[(7, day0)], contacts=[last_contact], today=today)
    assert found.lost and found.last_seen == last_contact
    assert names(found.due) == ["year4"] and found.due[0].treatment == 7
    assert found.overdue == () and found.last_missed is None
    assert found.latest_treatment == 7


def test_a_lost_patient_names_the_last_visit_missed_since_last_seen():
    found = follow_up(treatments=[(1, on(0))], contacts=[on(30)], today=on(420))
    assert found.lost and found.last_missed.status.visit.name == "month12"
    assert found.overdue == ()


def test_a_day_0_is_a_day_the_patient_was_seen():
    # treated again 100 days ago, never contacted since the first treatment's day 28
    found = follow_up(treatments=[(1, on(0)), (2, on(900))], contacts=[on(28)], today=on(1000))
    assert not found.lost and found.last_seen == on(900)
    assert names(found.due) == ["day100"] and found.due[0].treatment == 2


def test_the_earlier_treatments_schedule_ends_at_the_next_day_0():
    # the first treatment's year-2 window (685-775) is open on day 700, but a second
    # treatment began on day 690: only the second treatment's visits are followed
    found = follow_up(treatments=[(1, on(0)), (2, on(690))], contacts=[], today=on(700))
    assert found.due == () and found.overdue == ()


def test_a_contact_under_either_treatment_counts_for_the_patient():
    found = follow_up(treatments=[(1, on(0)), (2, on(0))], contacts=[on(25)], today=on(40))
    assert found.due == () and found.overdue == ()


def test_a_dead_patient_has_no_follow_up_due():
    found = follow_up(treatments=[(1, on(0))], contacts=[], today=on(500), alive=False)
    assert (found.due, found.overdue, found.lost) == ((), (), False)


def test_a_patient_without_treatment_is_not_followed():
    assert follow_up(treatments=[], contacts=[], today=on(500)) == FollowUp()
