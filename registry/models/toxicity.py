"""CRS and ICANS episodes: the raw worst-day findings, the recorded grade and the derived one."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from registry.domain.crs import CrsFindings
from registry.domain.icans import IcansFindings
from registry.domain.vocabulary import GradingSystem

from . import choices
from .base import ClinicalRecord
from .patients import Treatment


def _grade_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(recorded_grade__gte=0, recorded_grade__lte=5),
            name=f"{prefix}_recorded_grade_range",
        ),
        models.CheckConstraint(
            condition=Q(derived_grade__gte=0, derived_grade__lte=5),
            name=f"{prefix}_derived_grade_range",
        ),
        models.CheckConstraint(
            condition=Q(resolution__isnull=True) | Q(resolution__gte=F("onset")),
            name=f"{prefix}_resolution_after_onset",
        ),
    ]


class ToxicityEpisode(ClinicalRecord):
    onset = models.DateField(_("onset"))
    resolution = models.DateField(_("resolution"), null=True, blank=True)
    grading_system = models.CharField(
        _("grading system"),
        max_length=12,
        choices=choices.GRADING_SYSTEM,
        default=GradingSystem.ASTCT2019,
    )
    recorded_grade = models.PositiveSmallIntegerField(
        _("recorded grade"), null=True, blank=True, validators=[MaxValueValidator(5)]
    )
    derived_grade = models.PositiveSmallIntegerField(
        _("ASTCT 2019 grade (derived)"), null=True, blank=True, editable=False
    )

    class Meta:
        abstract = True
        ordering = ["onset"]

    @property
    def grade(self) -> int | None:
        """The grade analytics use: the derived ASTCT grade where it exists, else the recorded."""
        return self.derived_grade if self.derived_grade is not None else self.recorded_grade


class CrsEpisode(ToxicityEpisode):
    treatment = models.ForeignKey(
        Treatment,
        on_delete=models.PROTECT,
        related_name="crs_episodes",
        verbose_name=_("treatment"),
    )
    max_temperature_c = models.DecimalField(
        _("maximum temperature (°C)"),
        max_digits=3,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(34), MaxValueValidator(43)],
    )
    fever_masked = models.BooleanField(
        _("fever masked by antipyretics or anti-cytokine therapy"), default=False
    )
    hypotension = models.BooleanField(_("hypotension"), null=True, blank=True)
    vasopressors = models.PositiveSmallIntegerField(
        _("vasopressors (excluding vasopressin)"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(5)],
    )
    vasopressin = models.BooleanField(_("vasopressin used"), default=False)
    oxygen = models.CharField(
        _("oxygen support"), max_length=20, choices=choices.OXYGEN, blank=True
    )
    o2_flow_l_min = models.DecimalField(
        _("O₂ flow (L/min)"),
        max_digits=3,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(80)],
    )
    tocilizumab_doses = models.PositiveSmallIntegerField(_("tocilizumab doses"), default=0)
    corticosteroids = models.BooleanField(_("corticosteroids"), default=False)
    other_anticytokine = models.CharField(
        _("other anti-cytokine therapy"), max_length=200, blank=True
    )
    icu_admission = models.BooleanField(_("ICU admission"), default=False)
    died_of_crs = models.BooleanField(_("death from CRS"), default=False)

    class Meta(ToxicityEpisode.Meta):
        verbose_name = _("CRS episode")
        verbose_name_plural = _("CRS episodes")
        constraints = [
            *_grade_constraints("crs"),
            models.CheckConstraint(
                condition=Q(max_temperature_c__gte=34, max_temperature_c__lte=43),
                name="crs_temperature_range",
            ),
            models.CheckConstraint(condition=Q(vasopressors__lte=5), name="crs_vasopressors_range"),
            models.CheckConstraint(
                condition=Q(o2_flow_l_min__gte=0, o2_flow_l_min__lte=80), name="crs_o2_flow_range"
            ),
        ]

    def __str__(self) -> str:
        return f"CRS {self.onset} grade {self.grade}"

    def findings(self) -> CrsFindings:
        return CrsFindings(
            max_temperature_c=None
            if self.max_temperature_c is None
            else float(self.max_temperature_c),
            fever_masked=self.fever_masked,
            hypotension=self.hypotension,
            vasopressors=self.vasopressors,
            vasopressin=self.vasopressin,
            oxygen=self.oxygen or None,
            o2_flow_l_min=None if self.o2_flow_l_min is None else float(self.o2_flow_l_min),
            died_of_crs=self.died_of_crs,
        )


class IcansEpisode(ToxicityEpisode):
    treatment = models.ForeignKey(
        Treatment,
        on_delete=models.PROTECT,
        related_name="icans_episodes",
        verbose_name=_("treatment"),
    )
    ice_score = models.PositiveSmallIntegerField(
        _("worst ICE score (0-10)"), null=True, blank=True, validators=[MaxValueValidator(10)]
    )
    consciousness = models.CharField(
        _("level of consciousness"), max_length=20, choices=choices.CONSCIOUSNESS, blank=True
    )
    seizure = models.CharField(_("seizure"), max_length=24, choices=choices.SEIZURE, blank=True)
    motor_weakness = models.BooleanField(_("deep focal motor weakness"), null=True, blank=True)
    cerebral_oedema = models.CharField(
        _("raised ICP / cerebral oedema"),
        max_length=10,
        choices=choices.CEREBRAL_OEDEMA,
        blank=True,
    )
    died_of_icans = models.BooleanField(_("death from ICANS"), default=False)

    class Meta(ToxicityEpisode.Meta):
        verbose_name = _("ICANS episode")
        verbose_name_plural = _("ICANS episodes")
        constraints = [
            *_grade_constraints("icans"),
            models.CheckConstraint(condition=Q(ice_score__lte=10), name="icans_ice_score_range"),
        ]

    def __str__(self) -> str:
        return f"ICANS {self.onset} grade {self.grade}"

    def findings(self) -> IcansFindings:
        return IcansFindings(
            ice_score=self.ice_score,
            consciousness=self.consciousness or None,
            seizure=self.seizure or None,
            motor_weakness=self.motor_weakness,
            cerebral_oedema=self.cerebral_oedema or None,
            died_of_icans=self.died_of_icans,
        )
