"""What happened after day 0: response with MRD, transplant, contacts, relapse."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from registry.domain.vocabulary import MrdStatus, Response, YesNoUnknown

from . import choices
from .base import PERCENT, ClinicalRecord
from .patients import Treatment


class ResponseAssessment(ClinicalRecord):
    treatment = models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name="responses", verbose_name=_("treatment")
    )
    date = models.DateField(_("date"))
    bm_blast_pct = models.DecimalField(
        _("marrow blasts (%)"), max_digits=5, decimal_places=2, null=True, blank=True, **PERCENT
    )
    response = models.CharField(_("response"), max_length=16, choices=choices.RESPONSE)
    mrd_method = models.CharField(
        _("MRD method"), max_length=8, choices=choices.MRD_METHOD, blank=True
    )
    mrd_sensitivity_pct = models.DecimalField(
        _("MRD assay sensitivity (%)"),
        max_digits=8,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(100)],
        help_text=_("For example 0.01 for 10⁻⁴."),
    )
    mrd_result_pct = models.DecimalField(
        # xgettext:no-python-format
        _("MRD result (% of nucleated cells)"),
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        **PERCENT,
    )
    mrd_undetectable = models.BooleanField(_("MRD undetectable"), default=False)
    # A status reported without the raw values (legacy spreadsheets, the cohort file).
    mrd_reported = models.CharField(
        _("MRD status as reported"), max_length=16, blank=True, choices=choices.MRD_STATUS
    )
    mrd_status = models.CharField(
        _("MRD status (derived)"),
        max_length=16,
        blank=True,
        choices=choices.MRD_STATUS,
        editable=False,
    )

    class Meta:
        ordering = ["date"]
        verbose_name = _("response assessment")
        verbose_name_plural = _("response assessments")
        constraints = [
            models.CheckConstraint(
                condition=Q(bm_blast_pct__gte=0, bm_blast_pct__lte=100),
                name="response_bm_blast_pct_range",
            ),
            models.CheckConstraint(
                condition=Q(mrd_result_pct__gte=0, mrd_result_pct__lte=100),
                name="response_mrd_result_range",
            ),
            models.CheckConstraint(
                condition=Q(mrd_sensitivity_pct__gt=0, mrd_sensitivity_pct__lte=100),
                name="response_mrd_sensitivity_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_response_display()} {self.date}"

    @property
    def mrd_negative_cr(self) -> bool:
        return (
            self.response in (Response.CR, Response.CRI) and self.mrd_status == MrdStatus.NEGATIVE
        )


class Transplant(ClinicalRecord):
    treatment = models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name="transplants", verbose_name=_("treatment")
    )
    date = models.DateField(_("date"))
    type = models.CharField(_("type"), max_length=20, choices=choices.TRANSPLANT_TYPE)
    conditioning = models.TextField(_("conditioning"), blank=True)

    class Meta:
        ordering = ["date"]
        verbose_name = _("transplant")
        verbose_name_plural = _("transplants")

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.date}"


class FollowUpContact(ClinicalRecord):
    """A contact at which the patient was known to be alive."""

    treatment = models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name="contacts", verbose_name=_("treatment")
    )
    date = models.DateField(_("date"))
    disease_status = models.CharField(
        _("disease status"), max_length=10, choices=choices.DISEASE_STATUS
    )
    b_cell_aplasia = models.CharField(
        _("B-cell aplasia"),
        max_length=10,
        choices=choices.YES_NO_UNKNOWN,
        default=YesNoUnknown.UNKNOWN,
    )
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        ordering = ["date"]
        verbose_name = _("follow-up contact")
        verbose_name_plural = _("follow-up contacts")
        indexes = [
            models.Index(fields=["treatment", "date"]),
            # the latest contact of the registry (registry.selectors.worklist_for)
            models.Index(fields=["date"], name="followupcontact_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.date}"


class Relapse(ClinicalRecord):
    treatment = models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name="relapses", verbose_name=_("treatment")
    )
    date = models.DateField(_("date"))
    kind = models.CharField(_("kind"), max_length=16, choices=choices.RELAPSE_KIND)
    cd19_status = models.CharField(
        _("CD19 at relapse"), max_length=10, choices=choices.CD19_STATUS, default="unknown"
    )

    class Meta:
        ordering = ["date"]
        verbose_name = _("relapse or progression")
        verbose_name_plural = _("relapses or progressions")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.date}"
