"""Laboratory values of a treatment, entered as a series (DOMAIN.md "Hematotoxicity and late
effects"): the ANC series grades ICAHT (registry.domain.icaht), stored on the treatment."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .base import ClinicalRecord
from .patients import Treatment

# The values of a row, in the order of the grid's columns. Their plausible ranges are in
# registry.domain.ranges.
LAB_FIELDS = (
    "anc_per_ul",
    "platelets_10e9_l",
    "haemoglobin_g_dl",
    "crp_mg_l",
    "ferritin_ng_ml",
    "igg_g_l",
    "cd19_b_cells_per_ul",
)


class LabValue(ClinicalRecord):
    """One day's laboratory values of a treatment (any of them; several rows of one day may
    exist, docs/DOMAIN_DECISIONS.md "ICAHT")."""

    treatment = models.ForeignKey(
        Treatment, on_delete=models.PROTECT, related_name="lab_values", verbose_name=_("treatment")
    )
    date = models.DateField(_("date"))
    anc_per_ul = models.PositiveIntegerField(_("ANC (cells/µL)"), null=True, blank=True)
    platelets_10e9_l = models.PositiveIntegerField(_("platelets (×10⁹/L)"), null=True, blank=True)
    haemoglobin_g_dl = models.DecimalField(
        _("haemoglobin (g/dL)"), max_digits=3, decimal_places=1, null=True, blank=True
    )
    crp_mg_l = models.DecimalField(
        _("CRP (mg/L)"), max_digits=5, decimal_places=1, null=True, blank=True
    )
    ferritin_ng_ml = models.PositiveIntegerField(_("ferritin (ng/mL)"), null=True, blank=True)
    igg_g_l = models.DecimalField(
        _("IgG (g/L)"), max_digits=4, decimal_places=1, null=True, blank=True
    )
    cd19_b_cells_per_ul = models.DecimalField(
        _("CD19+ B cells (cells/µL)"), max_digits=6, decimal_places=1, null=True, blank=True
    )

    class Meta:
        ordering = ["treatment", "date", "pk"]
        verbose_name = _("laboratory value")
        verbose_name_plural = _("laboratory values")
        indexes = [models.Index(fields=["treatment", "date"], name="labvalue_treatment_date_idx")]

    def __str__(self) -> str:
        return f"{self.treatment} {self.date}"
