"""The registry's enumerations: the stored values of DOMAIN.md and INTERFACES.md section 3.

Labels (and their translations) live beside the models; here are only the values, so that the
pure rules, the import and the analytics share one spelling.
"""

from __future__ import annotations

from enum import StrEnum


class Arm(StrEnum):
    BLINATUMOMAB = "blinatumomab"
    CAR_T = "car_t"


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


class PhStatus(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class YesNoUnknown(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class DiseaseBurden(StrEnum):
    MRD_ONLY = "mrd_only"  # morphological CR with MRD >= 0.01%
    MORPHOLOGIC = "morphologic"  # marrow blasts >= 5% or extramedullary disease


class RelapseStatus(StrEnum):
    MRD_PERSISTENT_CR1 = "mrd_persistent_cr1"
    PRIMARY_REFRACTORY = "primary_refractory"
    FIRST_RELAPSE = "first_relapse"
    SECOND_OR_LATER_RELAPSE = "second_or_later_relapse"


class CostimDomain(StrEnum):
    FOUR_1BB = "4-1bb"
    CD28 = "cd28"


class GradingSystem(StrEnum):
    ASTCT2019 = "astct2019"
    LEE2014 = "lee2014"
    PENN = "penn"
    CARTOX = "cartox"
    CTCAE_V4 = "ctcae_v4"
    CTCAE_V5 = "ctcae_v5"


class Oxygen(StrEnum):
    NONE = "none"
    LOW_FLOW = "low_flow"
    HIGH_FLOW = "high_flow"
    POSITIVE_PRESSURE = "positive_pressure"


class Consciousness(StrEnum):
    AWAKE = "awake"
    WAKES_TO_VOICE = "wakes_to_voice"
    WAKES_TO_TOUCH = "wakes_to_touch"
    UNAROUSABLE = "unarousable"


class Seizure(StrEnum):
    NONE = "none"
    RESOLVED_RAPIDLY = "resolved_rapidly"
    PROLONGED_OR_REPEATED = "prolonged_or_repeated"


class CerebralOedema(StrEnum):
    NONE = "none"
    FOCAL = "focal"
    DIFFUSE = "diffuse"


class Response(StrEnum):
    CR = "cr"
    CRI = "cri"
    PR = "pr"
    NR = "nr"
    NOT_EVALUABLE = "not_evaluable"


class MrdMethod(StrEnum):
    FLOW = "flow"
    PCR = "pcr"
    NGS = "ngs"


class MrdStatus(StrEnum):
    NEGATIVE = "negative"
    POSITIVE = "positive"
    NOT_EVALUABLE = "not_evaluable"  # assay less sensitive than 0.01%


class TransplantType(StrEnum):
    UCBT = "ucbt"
    HAPLO = "haplo"
    MATCHED_SIBLING = "matched_sibling"
    MATCHED_UNRELATED = "matched_unrelated"
    OTHER = "other"


class DiseaseStatus(StrEnum):
    REMISSION = "remission"
    RELAPSED = "relapsed"
    UNKNOWN = "unknown"


class RelapseKind(StrEnum):
    MORPHOLOGIC = "morphologic"
    MRD = "mrd"
    EXTRAMEDULLARY = "extramedullary"


class Cd19Status(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class DeathCause(StrEnum):
    DISEASE = "disease"
    CRS = "crs"
    ICANS = "icans"
    INFECTION = "infection"
    GVHD = "gvhd"
    OTHER_TREATMENT_RELATED = "other_treatment_related"
    OTHER = "other"
    UNKNOWN = "unknown"


# Late effects (DOMAIN.md "Hematotoxicity and late effects")
class InfectionSite(StrEnum):
    BLOODSTREAM = "bloodstream"
    RESPIRATORY = "respiratory"
    URINARY = "urinary"
    GASTROINTESTINAL = "gastrointestinal"
    SKIN_SOFT_TISSUE = "skin_soft_tissue"
    CNS = "cns"
    OTHER = "other"
    UNKNOWN = "unknown"


class OrganismClass(StrEnum):
    BACTERIAL = "bacterial"
    VIRAL = "viral"
    FUNGAL = "fungal"
    OTHER = "other"
    UNKNOWN = "unknown"


class PersistenceMethod(StrEnum):
    FLOW = "flow"
    QPCR = "qpcr"


class Role(StrEnum):
    NURSE = "nurse"
    DATA_MANAGER = "data_manager"
    PI = "pi"
    ADMINISTRATOR = "administrator"
