"""ASTCT 2019 consensus grade of cytokine release syndrome (DOMAIN.md "ASTCT 2019 CRS grade").

Source: Lee DW et al. ASTCT consensus grading for cytokine release syndrome and neurologic
toxicity associated with immune effector cells. Biol Blood Marrow Transplant 2019;25:625-638,
table 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.vocabulary import Oxygen

# Lee 2019: fever is a temperature >= 38.0 C not attributable to any other cause.
FEVER_C = 38.0

# Lee 2019: low-flow nasal cannula is <= 6 L/min; above that it is high flow, whatever the
# device is called.
LOW_FLOW_MAX_L_MIN = 6.0

# Lee 2019 table 1, hypoxia column: the least support that defines each grade.
OXYGEN_GRADE: dict[Oxygen, int] = {
    Oxygen.NONE: 1,
    Oxygen.LOW_FLOW: 2,
    Oxygen.HIGH_FLOW: 3,
    Oxygen.POSITIVE_PRESSURE: 4,
}

GRADE_DEATH = 5
SEVERE_FROM_GRADE = 3


@dataclass(frozen=True)
class CrsFindings:
    """The worst day of one CRS episode; None means not recorded."""

    max_temperature_c: float | None = None
    # Antipyretics or anti-cytokine therapy (tocilizumab, steroids) were given, so fever may
    # be absent; Lee 2019 then grades on hypotension and hypoxia alone.
    fever_masked: bool = False
    hypotension: bool | None = None
    vasopressors: int | None = None  # number of vasopressors, vasopressin excluded
    vasopressin: bool = False
    oxygen: Oxygen | str | None = None
    o2_flow_l_min: float | None = None
    died_of_crs: bool = False


def has_fever(findings: CrsFindings) -> bool:
    """A recorded temperature of 38.0 C or more (masking is judged separately)."""
    return findings.max_temperature_c is not None and findings.max_temperature_c >= FEVER_C


def missing_findings(findings: CrsFindings) -> tuple[str, ...]:
    """The findings the grade is still waiting for, by CrsFindings field name, in the order a
    nurse enters them; empty when the grade can be derived.

    The temperature is not needed when fever is masked, the number of vasopressors only with
    hypotension (vasopressin alone counts as one), and nothing else after a death from CRS.
    """
    if findings.died_of_crs:
        return ()
    missing = []
    if findings.max_temperature_c is None and not findings.fever_masked:
        missing.append("max_temperature_c")
    if findings.hypotension is None:
        missing.append("hypotension")
    elif findings.hypotension and findings.vasopressors is None and not findings.vasopressin:
        missing.append("vasopressors")
    if findings.oxygen is None:
        missing.append("oxygen")
    return tuple(missing)


def findings_complete(findings: CrsFindings) -> bool:
    """Enough is recorded to derive the ASTCT grade."""
    return not missing_findings(findings)


def hypotension_grade(findings: CrsFindings) -> int:
    if not findings.hypotension:
        return 1
    vasopressors = findings.vasopressors or 0
    # Lee 2019: vasopressin beside another vasopressor does not make it "several"; on its own
    # it is still one vasopressor.
    if vasopressors == 0 and findings.vasopressin:
        vasopressors = 1
    # Lee 2019 table 1, hypotension column: no vasopressor 2, one 3, several 4.
    return min(2 + vasopressors, 4)


def hypoxia_grade(findings: CrsFindings) -> int:
    oxygen = Oxygen(findings.oxygen or Oxygen.NONE)
    flow = findings.o2_flow_l_min
    # Lee 2019: a cannula above 6 L/min is high flow whatever the device is called.
    if oxygen == Oxygen.LOW_FLOW and flow is not None and flow > LOW_FLOW_MAX_L_MIN:
        oxygen = Oxygen.HIGH_FLOW
    return OXYGEN_GRADE[oxygen]


def crs_grade(findings: CrsFindings) -> int | None:
    """ASTCT 2019 grade 0-5 of the episode's worst day, or None when findings are incomplete."""
    if not findings_complete(findings):
        return None
    if findings.died_of_crs:
        return GRADE_DEATH
    # Lee 2019: fever is required for grades 1-4 unless masked by antipyretics or
    # anti-cytokine therapy.
    if not (has_fever(findings) or findings.fever_masked):
        return 0
    return max(hypotension_grade(findings), hypoxia_grade(findings))
