"""ASTCT 2019 ICANS grade (Lee et al. 2019, table 5), walked domain by domain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from registry.domain.icans import (
    IcansFindings,
    findings_complete,
    icans_grade,
    missing_findings,
)
from registry.domain.vocabulary import CerebralOedema, Consciousness, Seizure

# Awake, ICE 10, nothing else: grade 0.
NORMAL = IcansFindings(ice_score=10, consciousness=Consciousness.AWAKE)


def test_ice_10_awake_with_no_other_finding_is_grade_0():
    assert icans_grade(NORMAL) == 0


def test_explicit_none_findings_are_still_grade_0():
    findings = replace(
        NORMAL,
        seizure=Seizure.NONE,
        motor_weakness=False,
        cerebral_oedema=CerebralOedema.NONE,
    )
    assert icans_grade(findings) == 0


@pytest.mark.parametrize(
    "ice_score, grade",
    [(10, 0), (9, 1), (8, 1), (7, 1), (6, 2), (5, 2), (4, 2), (3, 2), (2, 3), (1, 3), (0, 3)],
)
def test_ice_score_bands_grade_1_2_and_3(ice_score, grade):
    assert icans_grade(replace(NORMAL, ice_score=ice_score)) == grade


def test_ice_0_because_unarousable_is_grade_4():
    findings = IcansFindings(ice_score=0, consciousness=Consciousness.UNAROUSABLE)
    assert icans_grade(findings) == 4


@pytest.mark.parametrize(
    "consciousness, grade",
    [
        (Consciousness.AWAKE, 0),
        (Consciousness.WAKES_TO_VOICE, 2),
        (Consciousness.WAKES_TO_TOUCH, 3),
        (Consciousness.UNAROUSABLE, 4),
        ("awake", 0),
        ("wakes_to_voice", 2),
        ("wakes_to_touch", 3),
        ("unarousable", 4),
    ],
)
def test_depressed_consciousness_grades_2_to_4_and_awake_adds_nothing(consciousness, grade):
    assert icans_grade(replace(NORMAL, consciousness=consciousness)) == grade


@pytest.mark.parametrize(
    "seizure, grade",
    [
        (None, 0),
        (Seizure.NONE, 0),
        (Seizure.RESOLVED_RAPIDLY, 3),
        (Seizure.PROLONGED_OR_REPEATED, 4),
        ("resolved_rapidly", 3),
        ("prolonged_or_repeated", 4),
    ],
)
def test_a_rapidly_resolving_seizure_is_grade_3_and_a_prolonged_one_grade_4(seizure, grade):
    assert icans_grade(replace(NORMAL, seizure=seizure)) == grade


@pytest.mark.parametrize("motor_weakness, grade", [(None, 0), (False, 0), (True, 4)])
def test_deep_focal_motor_weakness_is_grade_4(motor_weakness, grade):
    assert icans_grade(replace(NORMAL, motor_weakness=motor_weakness)) == grade


@pytest.mark.parametrize(
    "oedema, grade",
    [
        (None, 0),
        (CerebralOedema.NONE, 0),
        (CerebralOedema.FOCAL, 3),
        (CerebralOedema.DIFFUSE, 4),
        ("focal", 3),
        ("diffuse", 4),
    ],
)
def test_focal_oedema_is_grade_3_and_diffuse_oedema_grade_4(oedema, grade):
    assert icans_grade(replace(NORMAL, cerebral_oedema=oedema)) == grade


@pytest.mark.parametrize(
    "findings, grade",
    [
        (IcansFindings(ice_score=8, consciousness=Consciousness.WAKES_TO_VOICE), 2),
        (IcansFindings(ice_score=5, consciousness=Consciousness.WAKES_TO_TOUCH), 3),
        (IcansFindings(ice_score=2, consciousness=Consciousness.WAKES_TO_VOICE), 3),
        (IcansFindings(ice_score=9, consciousness="awake", seizure="resolved_rapidly"), 3),
        (IcansFindings(ice_score=6, consciousness="awake", cerebral_oedema="focal"), 3),
        (IcansFindings(ice_score=8, consciousness="awake", motor_weakness=True), 4),
        (IcansFindings(ice_score=3, consciousness="wakes_to_touch", cerebral_oedema="diffuse"), 4),
        (
            IcansFindings(
                ice_score=0,
                consciousness="wakes_to_touch",
                seizure="prolonged_or_repeated",
                cerebral_oedema="focal",
            ),
            4,
        ),
    ],
)
def test_the_worst_domain_sets_the_grade(findings, grade):
    assert icans_grade(findings) == grade


@pytest.mark.parametrize(
    "findings",
    [
        IcansFindings(died_of_icans=True),
        replace(NORMAL, died_of_icans=True),
        IcansFindings(ice_score=0, consciousness="unarousable", died_of_icans=True),
    ],
)
def test_death_from_icans_is_grade_5_whatever_else_is_recorded(findings):
    assert findings_complete(findings)
    assert icans_grade(findings) == 5


@pytest.mark.parametrize(
    "findings",
    [
        IcansFindings(),
        IcansFindings(ice_score=10),
        IcansFindings(consciousness=Consciousness.AWAKE),
        IcansFindings(consciousness="awake", seizure="prolonged_or_repeated", motor_weakness=True),
        IcansFindings(ice_score=11, consciousness="awake"),
        IcansFindings(ice_score=-1, consciousness="awake"),
    ],
)
def test_without_an_ice_score_in_range_and_consciousness_there_is_no_derived_grade(findings):
    assert not findings_complete(findings)
    assert icans_grade(findings) is None


@pytest.mark.parametrize(
    "findings, missing",
    [
        (IcansFindings(), ("ice_score", "consciousness")),
        (IcansFindings(ice_score=10), ("consciousness",)),
        (IcansFindings(consciousness="awake", seizure="resolved_rapidly"), ("ice_score",)),
        (IcansFindings(ice_score=11, consciousness="awake"), ("ice_score",)),
        (NORMAL, ()),
        (IcansFindings(died_of_icans=True), ()),
    ],
)
def test_a_grade_that_cannot_be_derived_names_the_findings_it_waits_for(findings, missing):
    assert missing_findings(findings) == missing
    assert (icans_grade(findings) is None) == bool(missing)
