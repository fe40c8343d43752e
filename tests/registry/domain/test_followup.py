"""Follow-up windows from day 0, visit states and loss to follow-up (DOMAIN.md)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from registry.domain.followup import (
    DAYS_PER_MONTH,
    LOST_TO_FOLLOW_UP_DAYS,
    Visit,
    VisitState,
    VisitStatus,
    last_seen_of,
    lost_to_follow_up,
    schedule,
    visit_statuses,
)

DAY0 = date(2020, 3, 2)

# (visit, first day of its window, last day of its window), from DOMAIN.md.
WINDOWS = [
    ("day28", 21, 35),
    ("day100", 80, 120),
    ("month6", 150, 210),
    ("month12", 330, 400),
    ("year2", 685, 775),
    ("year3", 1050, 1140),
]


def on(day: int) -> date:
    return DAY0 + timedelta(days=day)


def status_of(name: str, statuses: list[VisitStatus]) -> VisitStatus:
    return next(status for status in statuses if status.visit.name == name)


def test_the_schedule_has_the_four_first_year_visits_then_one_a_year():
    assert schedule(1140) == [
        Visit("day28", 28, 21, 35),
        Visit("day100", 100, 80, 120),
        Visit("month6", 182, 150, 210),
        Visit("month12", 365, 330, 400),
        Visit("year2", 730, 685, 775),
        Visit("year3", 1095, 1050, 1140),
    ]


@pytest.mark.parametrize("year", [2, 3, 5, 10, 20])
def test_yearly_visits_are_365_times_k_plus_or_minus_45_days(year):
    visit = schedule(365 * year)[-1]
    assert visit == Visit(f"year{year}", 365 * year, 365 * year - 45, 365 * year + 45)


@pytest.mark.parametrize(
    "until_day, last_visit",
    [
        (21, "day28"),
        (79, "day28"),
        (80, "day100"),
        (149, "day100"),
        (150, "month6"),
        (329, "month6"),
        (330, "month12"),
        (684, "month12"),
        (685, "year2"),
        (1049, "year2"),
        (1050, "year3"),
    ],
)
def test_schedule_lists_visits_whose_window_has_opened(until_day, last_visit):
    assert schedule(until_day)[-1].name == last_visit


@pytest.mark.parametrize("until_day", [-5, 0, 20])
def test_schedule_is_empty_before_the_day_28_window_opens(until_day):
    assert schedule(until_day) == []


@pytest.mark.parametrize("name, opens_day, closes_day", WINDOWS)
@pytest.mark.parametrize(
    "offset_from_window, state",
    [
        ("day before opening", VisitState.OVERDUE),
        ("opening day", VisitState.DONE),
        ("closing day", VisitState.DONE),
        ("day after closing", VisitState.MISSED),  # seen since: a gap, not overdue
    ],
)
def test_a_contact_fulfils_a_visit_only_inside_its_window_inclusive(
    name, opens_day, closes_day, offset_from_window, state
):
    contact_day = {
        "day before opening": opens_day - 1,
        "opening day": opens_day,
        "closing day": closes_day,
        "day after closing": closes_day + 1,
    }[offset_from_window]
    statuses = visit_statuses(day0=DAY0, contacts=[on(contact_day)], today=on(1500))
    visit = status_of(name, statuses)
    assert visit.state == state
    assert visit.contact == (on(contact_day) if state == VisitState.DONE else None)
    assert (visit.opens, visit.closes) == (on(opens_day), on(closes_day))


@pytest.mark.parametrize("name, opens_day, closes_day", WINDOWS)
@pytest.mark.parametrize(
    "today_in_window, state",
    [
        ("day before opening", VisitState.UPCOMING),
        ("opening day", VisitState.DUE),
        ("closing day", VisitState.DUE),
        ("day after closing", VisitState.OVERDUE),
    ],
)
def test_a_visit_without_contact_is_upcoming_then_due_then_overdue(
    name, opens_day, closes_day, today_in_window, state
):
    today_day = {
        "day before opening": opens_day - 1,
        "opening day": opens_day,
        "closing day": closes_day,
        "day after closing": closes_day + 1,
    }[today_in_window]
    statuses = visit_statuses(day0=DAY0, contacts=[], today=on(today_day))
    assert status_of(name, statuses).state == state


@pytest.mark.parametrize(
    "today_day, listed",
    [
        (0, [("day28", VisitState.UPCOMING)]),
        (20, [("day28", VisitState.UPCOMING)]),
        (21, [("day28", VisitState.DUE), ("day100", VisitState.UPCOMING)]),
        (36, [("day28", VisitState.OVERDUE), ("day100", VisitState.UPCOMING)]),
        (
            80,
            [
                ("day28", VisitState.OVERDUE),
                ("day100", VisitState.DUE),
                ("month6", VisitState.UPCOMING),
            ],
        ),
    ],
)
def test_visits_are_listed_up_to_today_plus_the_next_upcoming_one(today_day, listed):
    statuses = visit_statuses(day0=DAY0, contacts=[], today=on(today_day))
    assert [(status.visit.name, status.state) for status in statuses] == listed


def test_after_month_12_the_next_upcoming_visit_is_year_2():
    statuses = visit_statuses(day0=DAY0, contacts=[on(28), on(100), on(182)], today=on(500))
    assert [(status.visit.name, status.state) for status in statuses] == [
        ("day28", VisitState.DONE),
        ("day100", VisitState.DONE),
        ("month6", VisitState.DONE),
        ("month12", VisitState.OVERDUE),
        ("year2", VisitState.UPCOMING),
    ]


def test_the_earliest_contact_in_a_window_is_the_one_reported():
    contacts = [on(33), on(24), on(29)]
    statuses = visit_statuses(day0=DAY0, contacts=contacts, today=on(60))
    assert status_of("day28", statuses).contact == on(24)


def test_a_contact_between_windows_fulfils_no_visit():
    statuses = visit_statuses(day0=DAY0, contacts=[on(50)], today=on(130))
    assert [status.state for status in statuses] == [
        VisitState.MISSED,  # closed with no contact, but the patient was seen after it
        VisitState.OVERDUE,  # closed with no contact, not seen since it opened
        VisitState.UPCOMING,
    ]


def test_a_visit_is_overdue_only_until_the_patient_is_seen_again():
    before = visit_statuses(day0=DAY0, contacts=[on(30)], today=on(130))
    after = visit_statuses(day0=DAY0, contacts=[on(30), on(125)], today=on(130))
    assert status_of("day100", before).state == VisitState.OVERDUE
    assert status_of("day100", after).state == VisitState.MISSED


@pytest.mark.parametrize(
    "next_day0, state",
    [
        (20, VisitState.NOT_APPLICABLE),  # re-treated before the window opened
        (30, VisitState.NOT_APPLICABLE),  # re-treated while it was open
        (35, VisitState.NOT_APPLICABLE),  # on its closing day
        (36, VisitState.MISSED),  # after it closed: the new day 0 is a day the patient was seen
    ],
)
def test_the_next_index_treatment_ends_the_schedule_of_the_one_before(next_day0, state):
    statuses = visit_statuses(
        day0=DAY0, contacts=[], today=on(300), ends=on(next_day0), last_seen=on(next_day0)
    )
    assert status_of("day28", statuses).state == state


def test_contacts_can_be_any_iterable_of_dates():
    statuses = visit_statuses(day0=DAY0, contacts=iter([on(30), on(30)]), today=on(40))
    assert status_of("day28", statuses).state == VisitState.DONE


@pytest.mark.parametrize(
    "death_day, state",
    [
        (10, VisitState.NOT_APPLICABLE),  # before the window opens
        (20, VisitState.NOT_APPLICABLE),  # the day before it opens
        (21, VisitState.NOT_APPLICABLE),  # on its opening day
        (30, VisitState.NOT_APPLICABLE),  # inside the window, with no contact
        (35, VisitState.NOT_APPLICABLE),  # on its closing day: never missed while alive
        (36, VisitState.OVERDUE),  # the window closed while the patient was alive
        (60, VisitState.OVERDUE),
    ],
)
def test_a_visit_missed_only_because_of_death_is_not_applicable(death_day, state):
    statuses = visit_statuses(day0=DAY0, contacts=[], today=on(90), death=on(death_day))
    assert status_of("day28", statuses).state == state


def test_a_visit_done_before_death_stays_done():
    statuses = visit_statuses(day0=DAY0, contacts=[on(25)], today=on(90), death=on(30))
    assert status_of("day28", statuses).state == VisitState.DONE
    assert status_of("day28", statuses).contact == on(25)


def test_every_visit_after_death_is_not_applicable_even_while_due_or_upcoming():
    statuses = visit_statuses(day0=DAY0, contacts=[on(28)], today=on(90), death=on(40))
    assert [(status.visit.name, status.state) for status in statuses] == [
        ("day28", VisitState.DONE),
        ("day100", VisitState.NOT_APPLICABLE),
        ("month6", VisitState.NOT_APPLICABLE),
    ]


@pytest.mark.parametrize(
    "days_since_seen, lost", [(0, False), (90, False), (180, False), (181, True), (400, True)]
)
def test_alive_patient_is_lost_to_follow_up_after_more_than_180_days(days_since_seen, lost):
    today = date(2024, 6, 30)
    last_seen = today - timedelta(days=days_since_seen)
    assert lost_to_follow_up(last_seen=last_seen, today=today, alive=True) is lost


def test_a_dead_patient_is_never_lost_to_follow_up():
    today = date(2024, 6, 30)
    last_seen = today - timedelta(days=LOST_TO_FOLLOW_UP_DAYS + 100)
    assert lost_to_follow_up(last_seen=last_seen, today=today, alive=False) is False


def test_without_any_treatment_there_is_nothing_to_measure_loss_from():
    assert lost_to_follow_up(last_seen=None, today=date(2024, 6, 30), alive=True) is False


def test_a_patient_is_last_seen_at_their_latest_contact_or_day_0():
    assert last_seen_of(day0s=[on(0), on(400)], contacts=[on(300)]) == on(400)
    assert last_seen_of(day0s=[on(0)], contacts=[on(300), on(30)]) == on(300)
    assert last_seen_of(day0s=[], contacts=[]) is None


def test_a_month_is_30_4375_days():
    assert DAYS_PER_MONTH == 30.4375  # DOMAIN.md; survival times in months divide by it
