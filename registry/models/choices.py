"""Translated labels for the enumerations of registry.domain.vocabulary."""

from __future__ import annotations

from enum import StrEnum

from django.utils.translation import gettext_lazy as _

from registry.domain import vocabulary as v


def choices(enum: type[StrEnum], labels: dict[StrEnum, str]) -> list[tuple[str, str]]:
    """Django choices for an enumeration, failing at import if a value has no label."""
    missing = set(enum) - set(labels)
    if missing:
        raise ValueError(f"{enum.__name__} has no label for {sorted(missing)}")
    return [(member.value, labels[member]) for member in enum]


ARM = choices(v.Arm, {v.Arm.BLINATUMOMAB: _("Blinatumomab"), v.Arm.CAR_T: _("CAR-T")})
SEX = choices(v.Sex, {v.Sex.MALE: _("Male"), v.Sex.FEMALE: _("Female")})
PH_STATUS = choices(
    v.PhStatus,
    {
        v.PhStatus.POSITIVE: _("Positive"),
        v.PhStatus.NEGATIVE: _("Negative"),
        v.PhStatus.UNKNOWN: _("Unknown"),
    },
)
YES_NO_UNKNOWN = choices(
    v.YesNoUnknown,
    {
        v.YesNoUnknown.YES: _("Yes"),
        v.YesNoUnknown.NO: _("No"),
        v.YesNoUnknown.UNKNOWN: _("Unknown"),
    },
)
DISEASE_BURDEN = choices(
    v.DiseaseBurden,
    {
        v.DiseaseBurden.MRD_ONLY: _("MRD-positive only (morphological CR, MRD ≥ 0.01%)"),
        # xgettext:no-python-format
        v.DiseaseBurden.MORPHOLOGIC: _("Not in remission (blasts ≥ 5% or extramedullary)"),
    },
)
RELAPSE_STATUS = choices(
    v.RelapseStatus,
    {
        v.RelapseStatus.MRD_PERSISTENT_CR1: _("MRD-persistent first CR"),
        v.RelapseStatus.PRIMARY_REFRACTORY: _("Primary refractory"),
        v.RelapseStatus.FIRST_RELAPSE: _("First relapse"),
        v.RelapseStatus.SECOND_OR_LATER_RELAPSE: _("Second or later relapse"),
    },
)
COSTIM_DOMAIN = choices(
    v.CostimDomain, {v.CostimDomain.FOUR_1BB: _("4-1BB"), v.CostimDomain.CD28: _("CD28")}
)
GRADING_SYSTEM = choices(
    v.GradingSystem,
    {
        v.GradingSystem.ASTCT2019: _("ASTCT 2019"),
        v.GradingSystem.LEE2014: _("Lee 2014"),
        v.GradingSystem.PENN: _("Penn"),
        v.GradingSystem.CARTOX: _("CARTOX"),
        v.GradingSystem.CTCAE_V4: _("CTCAE v4"),
        v.GradingSystem.CTCAE_V5: _("CTCAE v5"),
    },
)
OXYGEN = choices(
    v.Oxygen,
    {
        v.Oxygen.NONE: _("None"),
        v.Oxygen.LOW_FLOW: _("Low-flow nasal cannula or blow-by"),
        v.Oxygen.HIGH_FLOW: _("High-flow cannula, facemask, non-rebreather or Venturi"),
        v.Oxygen.POSITIVE_PRESSURE: _("Positive pressure (CPAP, BiPAP, ventilation)"),
    },
)
CONSCIOUSNESS = choices(
    v.Consciousness,
    {
        v.Consciousness.AWAKE: _("Awake"),
        v.Consciousness.WAKES_TO_VOICE: _("Wakes to voice"),
        v.Consciousness.WAKES_TO_TOUCH: _("Wakes only to touch"),
        v.Consciousness.UNAROUSABLE: _("Unarousable, stupor or coma"),
    },
)
SEIZURE = choices(
    v.Seizure,
    {
        v.Seizure.NONE: _("None"),
        v.Seizure.RESOLVED_RAPIDLY: _("Resolved rapidly"),
        v.Seizure.PROLONGED_OR_REPEATED: _("Prolonged (> 5 min) or repeated"),
    },
)
CEREBRAL_OEDEMA = choices(
    v.CerebralOedema,
    {
        v.CerebralOedema.NONE: _("None"),
        v.CerebralOedema.FOCAL: _("Focal oedema"),
        v.CerebralOedema.DIFFUSE: _("Diffuse oedema"),
    },
)
RESPONSE = choices(
    v.Response,
    {
        v.Response.CR: _("Complete remission (CR)"),
        v.Response.CRI: _("CR with incomplete count recovery (CRi)"),
        v.Response.PR: _("Partial remission (PR)"),
        v.Response.NR: _("No response (NR)"),
        v.Response.NOT_EVALUABLE: _("Not evaluable"),
    },
)
MRD_METHOD = choices(
    v.MrdMethod,
    {v.MrdMethod.FLOW: _("Flow cytometry"), v.MrdMethod.PCR: _("PCR"), v.MrdMethod.NGS: _("NGS")},
)
MRD_STATUS = choices(
    v.MrdStatus,
    {
        v.MrdStatus.NEGATIVE: _("MRD negative"),
        v.MrdStatus.POSITIVE: _("MRD positive"),
        v.MrdStatus.NOT_EVALUABLE: _("MRD not evaluable"),
    },
)
TRANSPLANT_TYPE = choices(
    v.TransplantType,
    {
        v.TransplantType.UCBT: _("Umbilical cord blood (UCBT)"),
        v.TransplantType.HAPLO: _("Haploidentical"),
        v.TransplantType.MATCHED_SIBLING: _("Matched sibling"),
        v.TransplantType.MATCHED_UNRELATED: _("Matched unrelated"),
        v.TransplantType.OTHER: _("Other"),
    },
)
DISEASE_STATUS = choices(
    v.DiseaseStatus,
    {
        v.DiseaseStatus.REMISSION: _("In remission"),
        v.DiseaseStatus.RELAPSED: _("Relapsed"),
        v.DiseaseStatus.UNKNOWN: _("Unknown"),
    },
)
RELAPSE_KIND = choices(
    v.RelapseKind,
    {
        v.RelapseKind.MORPHOLOGIC: _("Morphologic"),
        v.RelapseKind.MRD: _("MRD"),
        v.RelapseKind.EXTRAMEDULLARY: _("Extramedullary"),
    },
)
CD19_STATUS = choices(
    v.Cd19Status,
    {
        v.Cd19Status.POSITIVE: _("CD19 positive"),
        v.Cd19Status.NEGATIVE: _("CD19 negative"),
        v.Cd19Status.UNKNOWN: _("Unknown"),
    },
)
DEATH_CAUSE = choices(
    v.DeathCause,
    {
        v.DeathCause.DISEASE: _("Disease"),
        v.DeathCause.CRS: _("CRS"),
        v.DeathCause.ICANS: _("ICANS"),
        v.DeathCause.INFECTION: _("Infection"),
        v.DeathCause.GVHD: _("GVHD"),
        v.DeathCause.OTHER_TREATMENT_RELATED: _("Other treatment-related"),
        v.DeathCause.OTHER: _("Other"),
        v.DeathCause.UNKNOWN: _("Unknown"),
    },
)
INFECTION_SITE = choices(
    v.InfectionSite,
    {
        v.InfectionSite.BLOODSTREAM: _("Bloodstream"),
        v.InfectionSite.RESPIRATORY: _("Respiratory tract"),
        v.InfectionSite.URINARY: _("Urinary tract"),
        v.InfectionSite.GASTROINTESTINAL: _("Gastrointestinal"),
        v.InfectionSite.SKIN_SOFT_TISSUE: _("Skin and soft tissue"),
        v.InfectionSite.CNS: _("Central nervous system"),
        v.InfectionSite.OTHER: _("Other"),
        v.InfectionSite.UNKNOWN: _("Unknown"),
    },
)
ORGANISM_CLASS = choices(
    v.OrganismClass,
    {
        v.OrganismClass.BACTERIAL: _("Bacterial"),
        v.OrganismClass.VIRAL: _("Viral"),
        v.OrganismClass.FUNGAL: _("Fungal"),
        v.OrganismClass.OTHER: _("Other"),
        v.OrganismClass.UNKNOWN: _("Unknown"),
    },
)
PERSISTENCE_METHOD = choices(
    v.PersistenceMethod,
    {
        v.PersistenceMethod.FLOW: _("Flow cytometry"),
        v.PersistenceMethod.QPCR: _("qPCR of the CAR transgene"),
    },
)
ROLE = choices(
    v.Role,
    {
        v.Role.NURSE: _("Research nurse"),
        v.Role.DATA_MANAGER: _("Data manager"),
        v.Role.PI: _("Principal investigator"),
        v.Role.ADMINISTRATOR: _("Administrator"),
    },
)
