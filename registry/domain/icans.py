"""ASTCT 2019 consensus grade of ICANS (DOMAIN.md "ASTCT 2019 ICANS grade").

Source: Lee DW et al. ASTCT consensus grading for cytokine release syndrome and neurologic
toxicity associated with immune effector cells. Biol Blood Marrow Transplant 2019;25:625-638,
table 5 (adults; under 12 years the CAPD replaces the ICE score).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.vocabulary import CerebralOedema, Consciousness, Seizure

ICE_MAX = 10

# Lee 2019 table 5, ICE column: (lowest score of the band, grade), best band first.
# ICE 0 is grade 3 here; the grade 4 of "ICE 0 because unarousable" comes from consciousness.
ICE_GRADE: tuple[tuple[int, int], ...] = ((10, 0), (7, 1), (3, 2), (0, 3))

# Lee 2019 table 5, depressed level of consciousness. Its grade 1 "awakens spontaneously" is
# recorded as `awake` and graded 0: a patient who is awake is normal, and ICE 10 with no other
# finding must be grade 0 (DOMAIN.md), so being awake contributes nothing; a grade 1 comes from
# the ICE score.
CONSCIOUSNESS_GRADE: dict[Consciousness, int] = {
    Consciousness.AWAKE: 0,
    Consciousness.WAKES_TO_VOICE: 2,
    Consciousness.WAKES_TO_TOUCH: 3,
    Consciousness.UNAROUSABLE: 4,
}

# Lee 2019 table 5, seizure: any clinical seizure that resolves rapidly (or non-convulsive on
# EEG resolving with intervention) 3; prolonged (> 5 min) or repeated without return to
# baseline 4.
SEIZURE_GRADE: dict[Seizure, int] = {
    Seizure.NONE: 0,
    Seizure.RESOLVED_RAPIDLY: 3,
    Seizure.PROLONGED_OR_REPEATED: 4,
}

# Lee 2019 table 5, motor findings: deep focal weakness (hemiparesis, paraparesis) 4.
MOTOR_WEAKNESS_GRADE = 4

# Lee 2019 table 5, raised intracranial pressure / cerebral oedema.
CEREBRAL_OEDEMA_GRADE: dict[CerebralOedema, int] = {
    CerebralOedema.NONE: 0,
    CerebralOedema.FOCAL: 3,
    CerebralOedema.DIFFUSE: 4,
}

GRADE_DEATH = 5


@dataclass(frozen=True)
class IcansFindings:
    """The worst findings of one ICANS episode; None means not recorded."""

    ice_score: int | None = None  # 0-10, worst
    consciousness: Consciousness | str | None = None
    seizure: Seizure | str | None = None  # None is taken as no seizure
    motor_weakness: bool | None = None  # deep focal weakness; None is taken as none
    cerebral_oedema: CerebralOedema | str | None = None  # None is taken as no oedema
    died_of_icans: bool = False


def missing_findings(findings: IcansFindings) -> tuple[str, ...]:
    """The findings the grade is still waiting for, by IcansFindings field name: the ICE score
    (0-10) and consciousness; empty when the grade can be derived.

    Seizure, motor weakness and oedema are recorded only when present, so a blank counts as
    none. A death from ICANS is grade 5 whatever else is recorded.
    """
    if findings.died_of_icans:
        return ()
    missing = []
    if findings.ice_score is None or not 0 <= findings.ice_score <= ICE_MAX:
        missing.append("ice_score")
    if findings.consciousness is None:
        missing.append("consciousness")
    return tuple(missing)


def findings_complete(findings: IcansFindings) -> bool:
    """Enough is recorded to derive the ASTCT grade (nothing is missing_findings)."""
    return not missing_findings(findings)


def ice_grade(ice_score: int) -> int:
    return next(grade for lowest, grade in ICE_GRADE if ice_score >= lowest)


def icans_grade(findings: IcansFindings) -> int | None:
    """ASTCT 2019 grade 0-5, the worst of its domains; None when findings are incomplete."""
    if not findings_complete(findings):
        return None
    if findings.died_of_icans:
        return GRADE_DEATH
    assert findings.ice_score is not None and findings.consciousness is not None
    return max(
        ice_grade(findings.ice_score),
        CONSCIOUSNESS_GRADE[Consciousness(findings.consciousness)],
        SEIZURE_GRADE[Seizure(findings.seizure or Seizure.NONE)],
        MOTOR_WEAKNESS_GRADE if findings.motor_weakness else 0,
        CEREBRAL_OEDEMA_GRADE[CerebralOedema(findings.cerebral_oedema or CerebralOedema.NONE)],
    )
