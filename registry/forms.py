"""Forms for every clinical record: the same validation (registry.services) for every page.

`ClinicalForm` adds the reason for a change (required when editing a saved record) and the
version being edited, and shows every DOMAIN.md rule the record breaks next to its field.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from registry import services
from registry.models import (
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)

# Shown beside each number, so nobody has to guess the unit.
UNITS = {
    "bm_blast_pct": "%",
    # xgettext:no-python-format
    "mrd_result_pct": _("% of nucleated cells"),
    "mrd_sensitivity_pct": "%",
    "max_temperature_c": "°C",
    "o2_flow_l_min": "L/min",
    "dose_cells_per_kg": _("cells/kg"),
    "vasopressors": _("drugs"),
    "tocilizumab_doses": _("doses"),
    "ice_score": "/ 10",
    "year_of_birth": "",
}


class DateInput(forms.DateInput):
    """A date that can be typed (YYYY-MM-DD) or picked from the browser's calendar."""

    input_type = "date"

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


def add_service_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """Put each broken rule next to its field; rules about no field of the form go on top."""
    for field, field_messages in error.message_dict.items():
        target = field if field in form.fields else None
        for message in field_messages:
            if target is None and field not in ("__all__", "grade", "cause"):
                message = f"{field.replace('_', ' ')}: {message}"
            form.add_error(target, message)


class ClinicalForm(forms.ModelForm):
    change_reason = forms.CharField(
        label=_("Reason for the change"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required when you edit a saved record; it is kept in the audit trail."),
    )
    edited_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["edited_version"].initial = self.instance.version
        else:
            self.fields["change_reason"].widget = forms.HiddenInput()
        for name, field in self.fields.items():
            if isinstance(field, forms.DateField):
                field.widget = DateInput()
            field.unit = UNITS.get(name, "")

    def clean_change_reason(self) -> str:
        reason = self.cleaned_data.get("change_reason", "").strip()
        if self.instance.pk and not reason:
            raise ValidationError(_("Give a reason for the change; it goes into the audit trail."))
        return reason

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            services.full_validate(self.instance)
        except ValidationError as error:
            add_service_errors(self, error)

    def save_through_services(self, *, user):
        """Save with the one write path; a rule found only at saving goes back onto the form."""
        try:
            return services.record_save(
                self.instance,
                user=user,
                reason=self.cleaned_data.get("change_reason", ""),
                version=self.cleaned_data.get("edited_version"),
            )
        except ValidationError as error:
            add_service_errors(self, error)
            return None


class PatientForm(ClinicalForm):
    class Meta:
        model = Patient
        fields = [
            "site",
            "study_id",
            "sex",
            "year_of_birth",
            "ph_status",
            "diagnosis_date",
            "consent_date",
        ]


class TreatmentForm(ClinicalForm):
    class Meta:
        model = Treatment
        fields = [
            "arm",
            "day0",
            "product",
            "costim_domain",
            "dose_cells_per_kg",
            "cycles",
            "lymphodepletion",
            "bridging",
            "disease_burden",
            "bm_blast_pct",
            "extramedullary",
            "relapse_status",
            "prior_hsct",
            "cd19_positive",
            "crs_status",
            "icans_status",
        ]
        widgets = {
            "lymphodepletion": forms.Textarea(attrs={"rows": 2}),
            "bridging": forms.Textarea(attrs={"rows": 2}),
        }


class CrsEpisodeForm(ClinicalForm):
    class Meta:
        model = CrsEpisode
        fields = [
            "onset",
            "resolution",
            "max_temperature_c",
            "fever_masked",
            "hypotension",
            "vasopressors",
            "vasopressin",
            "oxygen",
            "o2_flow_l_min",
            "grading_system",
            "recorded_grade",
            "tocilizumab_doses",
            "corticosteroids",
            "other_anticytokine",
            "icu_admission",
            "died_of_crs",
        ]


class IcansEpisodeForm(ClinicalForm):
    class Meta:
        model = IcansEpisode
        fields = [
            "onset",
            "resolution",
            "ice_score",
            "consciousness",
            "seizure",
            "motor_weakness",
            "cerebral_oedema",
            "grading_system",
            "recorded_grade",
            "died_of_icans",
        ]


class ResponseForm(ClinicalForm):
    class Meta:
        model = ResponseAssessment
        fields = [
            "date",
            "response",
            "bm_blast_pct",
            "mrd_method",
            "mrd_sensitivity_pct",
            "mrd_result_pct",
            "mrd_undetectable",
        ]


class TransplantForm(ClinicalForm):
    class Meta:
        model = Transplant
        fields = ["date", "type", "conditioning"]
        widgets = {"conditioning": forms.Textarea(attrs={"rows": 2})}


class ContactForm(ClinicalForm):
    class Meta:
        model = FollowUpContact
        fields = ["date", "disease_status", "b_cell_aplasia", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}


class RelapseForm(ClinicalForm):
    class Meta:
        model = Relapse
        fields = ["date", "kind", "cd19_status"]


class DeathForm(ClinicalForm):
    class Meta:
        model = Death
        fields = ["date", "cause"]
