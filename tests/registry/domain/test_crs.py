"""ASTCT 2019 CRS grade (Lee et al. 2019, table 1), walked boundary by boundary."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.domain.crs import (
    SEVERE_FROM_GRADE,
    CrsFindings,
    crs_grade,
    findings_complete,
    has_fever,
    missing_findings,
)
from registry.domain.vocabulary import Oxygen

# A febrile worst day with no hypotension and no oxygen: grade 1.
FEVER_ONLY = CrsFindings(max_temperature_c=39.0, hypotension=False, oxygen=Oxygen.NONE)


@pytest.mark.parametrize(
    "temperature, fever",
    [(None, False), (36.5, False), (37.9, False), (38.0, True), (38.1, True), (41.0, True)],
)
def test_fever_starts_at_38_0_degrees(temperature, fever):
    assert has_fever(CrsFindings(max_temperature_c=temperature)) is fever


def test_fever_masking_is_not_itself_a_recorded_fever():
    assert has_fever(CrsFindings(fever_masked=True)) is False


@pytest.mark.parametrize("temperature, grade", [(37.9, 0), (38.0, 1)])
def test_grade_1_needs_a_temperature_of_38_0(temperature, grade):
    assert crs_grade(replace(FEVER_ONLY, max_temperature_c=temperature)) == grade


@pytest.mark.parametrize(
    "findings",
    [
        CrsFindings(max_temperature_c=37.0, hypotension=True, vasopressors=2, oxygen="none"),
        CrsFindings(max_temperature_c=37.9, hypotension=False, oxygen="positive_pressure"),
    ],
)
def test_without_fever_or_masking_the_grade_is_0_whatever_the_pressure_and_oxygen(findings):
    assert crs_grade(findings) == 0


@pytest.mark.parametrize(
    "temperature, hypotension, vasopressors, oxygen, grade",
    [
        (37.2, False, None, Oxygen.NONE, 1),
        (None, True, 0, Oxygen.NONE, 2),
        (36.8, False, None, Oxygen.HIGH_FLOW, 3),
        (None, True, 2, Oxygen.LOW_FLOW, 4),
    ],
)
def test_masked_fever_grades_on_hypotension_and_hypoxia_alone(
    temperature, hypotension, vasopressors, oxygen, grade
):
    findings = CrsFindings(
        max_temperature_c=temperature,
        fever_masked=True,
        hypotension=hypotension,
        vasopressors=vasopressors,
        oxygen=oxygen,
    )
    assert crs_grade(findings) == grade


@pytest.mark.parametrize(
    "hypotension, vasopressors, grade",
    [(False, None, 1), (False, 0, 1), (True, 0, 2), (True, 1, 3), (True, 2, 4), (True, 3, 4)],
)
def test_hypotension_grade_rises_with_each_vasopressor(hypotension, vasopressors, grade):
    findings = replace(FEVER_ONLY, hypotension=hypotension, vasopressors=vasopressors)
    assert crs_grade(findings) == grade


@pytest.mark.parametrize("vasopressors, grade", [(None, 3), (0, 3), (1, 3), (2, 4), (3, 4)])
def test_vasopressin_counts_as_one_vasopressor_only_when_given_alone(vasopressors, grade):
    findings = replace(FEVER_ONLY, hypotension=True, vasopressors=vasopressors, vasopressin=True)
    assert crs_grade(findings) == grade


@pytest.mark.parametrize(
    "oxygen, grade",
    [
        (Oxygen.NONE, 1),
        (Oxygen.LOW_FLOW, 2),
        (Oxygen.HIGH_FLOW, 3),
        (Oxygen.POSITIVE_PRESSURE, 4),
        ("none", 1),
        ("low_flow", 2),
        ("high_flow", 3),
        ("positive_pressure", 4),
    ],
)
def test_hypoxia_grade_follows_the_oxygen_support(oxygen, grade):
    assert crs_grade(replace(FEVER_ONLY, oxygen=oxygen)) == grade


@pytest.mark.parametrize(
    "flow, grade", [(None, 2), (1.0, 2), (6.0, 2), (6.1, 3), (6.5, 3), (7.0, 3), (15.0, 3)]
)
def test_low_flow_cannula_above_6_l_min_counts_as_high_flow(flow, grade):
    findings = replace(FEVER_ONLY, oxygen=Oxygen.LOW_FLOW, o2_flow_l_min=flow)
    assert crs_grade(findings) == grade


@pytest.mark.parametrize(
    "oxygen, flow, grade",
    [
        (Oxygen.HIGH_FLOW, 4.0, 3),
        (Oxygen.POSITIVE_PRESSURE, 10.0, 4),
        (Oxygen.NONE, 0.0, 1),
    ],
)
def test_flow_never_lowers_the_grade_of_the_device(oxygen, flow, grade):
    assert crs_grade(replace(FEVER_ONLY, oxygen=oxygen, o2_flow_l_min=flow)) == grade


@pytest.mark.parametrize(
    "hypotension, vasopressors, oxygen, flow, grade",
    [
        (True, 0, Oxygen.NONE, None, 2),
        (False, None, Oxygen.LOW_FLOW, 2.0, 2),
        (True, 0, Oxygen.LOW_FLOW, 7.0, 3),
        (True, 1, Oxygen.LOW_FLOW, 2.0, 3),
        (True, 2, Oxygen.HIGH_FLOW, None, 4),
        (False, None, Oxygen.POSITIVE_PRESSURE, None, 4),
        (True, 1, Oxygen.POSITIVE_PRESSURE, None, 4),
    ],
)
def test_grade_is_the_worse_of_hypotension_and_hypoxia(
    hypotension, vasopressors, oxygen, flow, grade
):
    findings = replace(
        FEVER_ONLY,
        hypotension=hypotension,
        vasopressors=vasopressors,
        oxygen=oxygen,
        o2_flow_l_min=flow,
    )
    assert crs_grade(findings) == grade


@pytest.mark.parametrize(
    "findings",
    [
        CrsFindings(died_of_crs=True),
        replace(FEVER_ONLY, died_of_crs=True),
        CrsFindings(max_temperature_c=37.0, hypotension=False, oxygen="none", died_of_crs=True),
    ],
)
def test_death_from_crs_is_grade_5_whatever_else_is_recorded(findings):
    assert findings_complete(findings)
    assert crs_grade(findings) == 5


@pytest.mark.parametrize(
    "findings",
    [
        CrsFindings(),
        CrsFindings(hypotension=False, oxygen=Oxygen.NONE),
        CrsFindings(max_temperature_c=39.0, oxygen=Oxygen.NONE),
        CrsFindings(max_temperature_c=39.0, hypotension=False),
        CrsFindings(max_temperature_c=39.0, hypotension=True, oxygen=Oxygen.NONE),
        CrsFindings(max_temperature_c=37.0, hypotension=False),
    ],
)
def test_incomplete_findings_have_no_derived_grade(findings):
    assert not findings_complete(findings)
    assert crs_grade(findings) is None


@pytest.mark.parametrize(
    "findings",
    [
        FEVER_ONLY,
        CrsFindings(fever_masked=True, hypotension=False, oxygen=Oxygen.NONE),
        CrsFindings(max_temperature_c=39.0, hypotension=True, vasopressors=0, oxygen="none"),
        CrsFindings(max_temperature_c=39.0, hypotension=True, vasopressin=True, oxygen="none"),
    ],
)
def test_temperature_or_masking_pressure_and_oxygen_make_findings_complete(findings):
    assert findings_complete(findings)
    assert crs_grade(findings) is not None


def test_severe_crs_is_grade_3_or_more():
    assert SEVERE_FROM_GRADE == 3  # DOMAIN.md; the analytics count grade >= this as severe


@pytest.mark.parametrize(
    "findings, missing",
    [
        (CrsFindings(), ("max_temperature_c", "hypotension", "oxygen")),
        (CrsFindings(max_temperature_c=39.0), ("hypotension", "oxygen")),
        (CrsFindings(fever_masked=True, hypotension=False), ("oxygen",)),
        (CrsFindings(max_temperature_c=39.0, hypotension=True, oxygen="none"), ("vasopressors",)),
        (CrsFindings(max_temperature_c=39.0, hypotension=False, oxygen="none"), ()),
        (CrsFindings(max_temperature_c=39.0, hypotension=True, vasopressin=True), ("oxygen",)),
        (CrsFindings(died_of_crs=True), ()),
    ],
)
def test_a_grade_that_cannot_be_derived_names_the_findings_it_waits_for(findings, missing):
    assert missing_findings(findings) == missing


@given(
    st.builds(
        CrsFindings,
        max_temperature_c=st.none() | st.floats(35, 42),
        fever_masked=st.booleans(),
        hypotension=st.none() | st.booleans(),
        vasopressors=st.none() | st.integers(0, 4),
        vasopressin=st.booleans(),
        oxygen=st.none() | st.sampled_from(list(Oxygen)),
        o2_flow_l_min=st.none() | st.floats(0, 60),
        died_of_crs=st.booleans(),
    )
)
def test_a_grade_is_derived_exactly_when_no_finding_is_missing(findings):
    assert (crs_grade(findings) is None) == bool(missing_findings(findings))
