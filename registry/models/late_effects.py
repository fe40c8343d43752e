"""The late events of a treatment that CAR-T registries now collect (DOMAIN.md "Hematotoxicity
and late effects"; CIBMTR form 4100): infections, IEC-HS, immunoglobulin replacement, CAR
persistence and second cancers. B-cell aplasia stays on the follow-up contact.

Each is dated on or after day 0 and not after the death (registry.validation); the grades'
ranges are in registry.domain.ranges, with a database constraint behind them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from registry.domain.vocabulary import YesNoUnknown

from . import choices
from .base import ClinicalRecord
from .patients import Treatment


def _treatment(related_name: str) -> models.ForeignKey:
    return models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name=related_name, verbose_name=_("treatment")
    )


def _yes_no_unknown(label) -> models.CharField:
    return models.CharField(
        label, max_length=10, choices=choices.YES_NO_UNKNOWN, default=YesNoUnknown.UNKNOWN
    )


class Infection(ClinicalRecord):
    """An infection after day 0, with its CTCAE grade (the competing-risks analysis counts the
    first one by day 100)."""

    treatment = _treatment("infections")
    onset = models.DateField(_("onset"))
    site = models.CharField(_("site of infection"), max_length=20, choices=choices.INFECTION_SITE)
    organism_class = models.CharField(
        _("organism class"), max_length=10, choices=choices.ORGANISM_CLASS
    )
    ctcae_grade = models.PositiveSmallIntegerField(
        _("CTCAE grade"),
        help_text=_("1 to 5; grade 5 is death from the infection, which the death record shows."),
    )
    treatment_required = _yes_no_unknown(_("treatment required"))
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        ordering = ["onset"]
        verbose_name = _("infection")
        verbose_name_plural = _("infections")
        constraints = [
            models.CheckConstraint(
                condition=Q(ctcae_grade__gte=1, ctcae_grade__lte=5),
                name="infection_ctcae_grade_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_organism_class_display()} {self.onset}"


# The ASTCT 2023 IEC-HS criteria an episode records (Hines et al., Transplant Cell Ther
# 2023;29:438): the key feature (ferritin), its timing, and the associated findings.
IEC_HS_CRITERIA = (
    "ferritin_rise",
    "onset_after_crs",
    "hemophagocytosis",
    "transaminitis",
    "hyperbilirubinemia",
    "coagulopathy",
    "cytopenias",
    "elevated_ldh",
    "splenomegaly",
    "renal_insufficiency",
    "pulmonary",
)


class IecHsEpisode(ClinicalRecord):
    """An immune effector cell-associated HLH-like syndrome: the criteria present and the
    ASTCT 2023 grade as recorded (it is not derived: the grade rests on the management)."""

    treatment = _treatment("iec_hs_episodes")
    onset = models.DateField(_("onset"))
    ferritin_rise = models.BooleanField(
        _("ferritin above 2 × the upper limit of normal (or the baseline), or rising rapidly"),
        default=False,
    )
    onset_after_crs = models.BooleanField(
        _("onset as CRS resolves, or inflammation worsening after CRS-directed therapy"),
        default=False,
    )
    hemophagocytosis = models.BooleanField(
        _("hemophagocytosis in marrow or other tissue"), default=False
    )
    transaminitis = models.BooleanField(
        _("transaminases above 5 × the upper limit of normal (or the baseline)"), default=False
    )
    hyperbilirubinemia = models.BooleanField(_("hyperbilirubinemia"), default=False)
    coagulopathy = models.BooleanField(
        _("coagulopathy with hypofibrinogenemia (below 150 mg/dL)"), default=False
    )
    cytopenias = models.BooleanField(_("new or worsening cytopenias"), default=False)
    elevated_ldh = models.BooleanField(_("LDH above the upper limit of normal"), default=False)
    splenomegaly = models.BooleanField(_("splenomegaly"), default=False)
    renal_insufficiency = models.BooleanField(_("new renal insufficiency"), default=False)
    pulmonary = models.BooleanField(
        _("pulmonary involvement (hypoxia, infiltrates or oedema)"), default=False
    )
    recorded_grade = models.PositiveSmallIntegerField(
        _("ASTCT IEC-HS grade (as recorded)"),
        help_text=_(
            "1 to 5, as graded by the treating team (ASTCT 2023); grade 5 is death from IEC-HS, "
            "which the patient's death record must show."
        ),
    )
    treatment_given = models.TextField(
        _("treatment given"),
        blank=True,
        help_text=_("For example anakinra, corticosteroids, ruxolitinib, emapalumab, etoposide."),
    )

    class Meta:
        ordering = ["onset"]
        verbose_name = _("IEC-HS episode")
        verbose_name_plural = _("IEC-HS episodes")
        constraints = [
            models.CheckConstraint(
                condition=Q(recorded_grade__gte=1, recorded_grade__lte=5),
                name="iechs_recorded_grade_range",
            ),
        ]

    def __str__(self) -> str:
        return f"IEC-HS {self.onset}"

    @property
    def criteria_present(self) -> list[str]:
        """The names of the criteria ticked, in the order of IEC_HS_CRITERIA."""
        return [name for name in IEC_HS_CRITERIA if getattr(self, name)]


class IvigCourse(ClinicalRecord):
    """Immunoglobulin replacement (IVIG or subcutaneous): a course from its start to its stop
    (none while it goes on)."""

    treatment = _treatment("ivig_courses")
    start = models.DateField(_("start"))
    stop = models.DateField(_("stop"), null=True, blank=True, help_text=_("Blank while ongoing."))

    class Meta:
        ordering = ["start"]
        verbose_name = _("immunoglobulin replacement course")
        verbose_name_plural = _("immunoglobulin replacement courses")
        constraints = [
            models.CheckConstraint(
                condition=Q(stop__isnull=True) | Q(stop__gte=F("start")),
                name="ivig_stop_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"IVIG {self.start}"


class CarPersistence(ClinicalRecord):
    """Whether CAR T cells were found in blood on a date, by flow cytometry or qPCR."""

    treatment = _treatment("persistence_assessments")
    date = models.DateField(_("date"))
    method = models.CharField(_("method"), max_length=8, choices=choices.PERSISTENCE_METHOD)
    detected = models.BooleanField(_("CAR T cells detected"), default=False)

    class Meta:
        ordering = ["date"]
        verbose_name = _("CAR persistence assessment")
        verbose_name_plural = _("CAR persistence assessments")

    def __str__(self) -> str:
        return f"{self.get_method_display()} {self.date}"


class SecondCancer(ClinicalRecord):
    """A second primary cancer; a T-cell malignancy asks whether the CAR transgene was looked
    for in it (the 2024 boxed warning on CAR-T products)."""

    treatment = _treatment("second_cancers")
    date = models.DateField(_("date of diagnosis"))
    cancer_type = models.CharField(_("type of cancer"), max_length=120)
    t_cell_malignancy = models.BooleanField(_("T-cell malignancy"), default=False)
    car_transgene_tested = _yes_no_unknown(_("tumour tested for the CAR transgene"))
    car_transgene_detected = _yes_no_unknown(_("CAR transgene detected in the tumour"))

    class Meta:
        ordering = ["date"]
        verbose_name = _("second cancer")
        verbose_name_plural = _("second cancers")

    def __str__(self) -> str:
        return f"{self.cancer_type} {self.date}"
