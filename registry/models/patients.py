"""The patient, the index treatment with its baseline disease, and death."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from registry.domain.icaht import SEVERE_FROM_GRADE
from registry.domain.identifiers import identifier_key, written_form
from registry.domain.vocabulary import PhStatus, YesNoUnknown
from registry.icaht_reasons import icaht_reason

from . import choices
from .base import PERCENT, ClinicalRecord
from .people import Site


class PatientManager(models.Manager):
    def bulk_create(self, objs, *args, **kwargs):
        """Each patient's study ID key, which save() would set (the demo seeds in bulk)."""
        objs = list(objs)
        for patient in objs:
            patient.study_id_key = identifier_key(patient.study_id or "")
        return super().bulk_create(objs, *args, **kwargs)


class Patient(ClinicalRecord):
    """A pseudonymous patient: no names, addresses or hospital numbers are ever stored."""

    objects = PatientManager()

    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, related_name="patients", verbose_name=_("site")
    )
    # Its characters are checked with its uniqueness, in registry.validation (every path).
    study_id = models.CharField(_("study ID"), max_length=40)
    # The study ID as its look-alikes share it (registry.domain.identifiers): unique per site.
    study_id_key = models.CharField(max_length=160, editable=False, default="")
    sex = models.CharField(_("sex"), max_length=1, choices=choices.SEX)
    year_of_birth = models.PositiveSmallIntegerField(_("year of birth"))
    ph_status = models.CharField(
        _("Ph (BCR::ABL1) status"),
        max_length=10,
        choices=choices.PH_STATUS,
        default=PhStatus.UNKNOWN,
    )
    diagnosis_date = models.DateField(_("date of diagnosis"), null=True, blank=True)
    consent_date = models.DateField(_("consent date"), null=True, blank=True)

    class Meta:
        ordering = ["site__code", "study_id"]
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        constraints = [
            models.UniqueConstraint(
                fields=["site", "study_id"], name="patient_study_id_unique_in_site"
            ),
            models.UniqueConstraint(
                fields=["site", "study_id_key"], name="patient_study_id_key_unique_in_site"
            ),
            models.CheckConstraint(
                condition=Q(year_of_birth__gte=1900), name="patient_year_of_birth_plausible"
            ),
        ]

    def __str__(self) -> str:
        return self.study_id

    def clean(self) -> None:
        """The study ID in its written form (NFKC, no surrounding spaces), and its key."""
        super().clean()
        self.study_id = written_form(self.study_id or "")
        self.study_id_key = identifier_key(self.study_id)

    def save(self, *args, **kwargs) -> None:
        self.study_id_key = identifier_key(self.study_id or "")
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "study_id" in update_fields:
            kwargs["update_fields"] = {*update_fields, "study_id_key"}
        super().save(*args, **kwargs)

    @property
    def patient(self) -> Patient:
        return self


class Treatment(ClinicalRecord):
    """An index treatment (day 0) and the disease as it stood on day 0."""

    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="treatments", verbose_name=_("patient")
    )
    arm = models.CharField(_("arm"), max_length=20, choices=choices.ARM)
    day0 = models.DateField(
        _("day 0"), help_text=_("First day of blinatumomab cycle 1, or the CAR-T infusion date.")
    )
    product = models.CharField(_("product / construct"), max_length=120, blank=True)
    costim_domain = models.CharField(
        _("costimulatory domain"), max_length=8, blank=True, choices=choices.COSTIM_DOMAIN
    )
    dose_cells_per_kg = models.FloatField(_("dose (cells/kg)"), null=True, blank=True)
    cycles = models.PositiveSmallIntegerField(_("blinatumomab cycles given"), null=True, blank=True)
    lymphodepletion = models.TextField(_("lymphodepletion"), blank=True)
    bridging = models.TextField(_("bridging therapy"), blank=True)
    # Baseline disease at day 0
    disease_burden = models.CharField(
        _("disease burden"), max_length=20, blank=True, choices=choices.DISEASE_BURDEN
    )
    bm_blast_pct = models.DecimalField(
        _("marrow blasts (%)"), max_digits=5, decimal_places=2, null=True, blank=True, **PERCENT
    )
    extramedullary = models.BooleanField(_("extramedullary disease"), null=True, blank=True)
    relapse_status = models.CharField(
        _("relapse status"), max_length=30, blank=True, choices=choices.RELAPSE_STATUS
    )
    prior_hsct = models.BooleanField(_("previous allogeneic HSCT"), null=True, blank=True)
    cd19_positive = models.CharField(
        _("CD19 positive"),
        max_length=10,
        choices=choices.YES_NO_UNKNOWN,
        default=YesNoUnknown.UNKNOWN,
    )
    # Whether CRS / ICANS occurred; "unknown" keeps the treatment out of the denominators.
    crs_status = models.CharField(
        _("CRS occurred"),
        max_length=10,
        choices=choices.YES_NO_UNKNOWN,
        default=YesNoUnknown.UNKNOWN,
    )
    icans_status = models.CharField(
        _("ICANS occurred"),
        max_length=10,
        choices=choices.YES_NO_UNKNOWN,
        default=YesNoUnknown.UNKNOWN,
    )

    # ICAHT (registry.domain.icaht), derived from the lab series by registry.services whenever
    # it (or day 0, a relapse, a transplant, the next treatment) changes; never typed. A grade
    # of None is "not gradable"; the rule key and its numbers make the sentence shown.
    icaht_early_grade = models.PositiveSmallIntegerField(
        _("early ICAHT grade (derived)"),
        null=True,
        blank=True,
        editable=False,
        validators=[MinValueValidator(0), MaxValueValidator(4)],
    )
    icaht_early_rule = models.CharField(max_length=32, blank=True, editable=False)
    icaht_early_params = models.JSONField(default=dict, blank=True, editable=False)
    icaht_late_grade = models.PositiveSmallIntegerField(
        _("late ICAHT grade (derived)"),
        null=True,
        blank=True,
        editable=False,
        validators=[MinValueValidator(0), MaxValueValidator(4)],
    )
    icaht_late_rule = models.CharField(max_length=32, blank=True, editable=False)
    icaht_late_params = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["patient", "day0"]
        verbose_name = _("index treatment")
        verbose_name_plural = _("index treatments")
        constraints = [
            models.CheckConstraint(
                condition=Q(bm_blast_pct__gte=0, bm_blast_pct__lte=100),
                name="treatment_bm_blast_pct_range",
            ),
        ]
        indexes = [
            models.Index(fields=["arm", "day0"]),
            # the oldest day 0 of the registry (registry.selectors.worklist_for)
            models.Index(fields=["day0"], name="treatment_day0_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.patient} {self.get_arm_display()} {self.day0}"

    @property
    def icaht_early_reason(self) -> str:
        """What gave the early ICAHT grade, or why there is none, in the reader's language."""
        return icaht_reason(self.icaht_early_rule, self.icaht_early_params)

    @property
    def icaht_late_reason(self) -> str:
        """What gave the late ICAHT grade, or why there is none, in the reader's language."""
        return icaht_reason(self.icaht_late_rule, self.icaht_late_params)

    @property
    def severe_icaht(self) -> bool:
        """Early or late ICAHT of grade 3 or more (Rejeski 2023)."""
        grades = (self.icaht_early_grade, self.icaht_late_grade)
        return any(grade is not None and grade >= SEVERE_FROM_GRADE for grade in grades)


class Death(ClinicalRecord):
    patient = models.OneToOneField(
        Patient, on_delete=models.PROTECT, related_name="death", verbose_name=_("patient")
    )
    date = models.DateField(_("date of death"))
    cause = models.CharField(_("cause"), max_length=30, choices=choices.DEATH_CAUSE)

    class Meta:
        verbose_name = _("death")
        verbose_name_plural = _("deaths")

    def __str__(self) -> str:
        return f"{self.patient} {self.date}"
