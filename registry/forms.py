"""Forms for every clinical record: the same validation (registry.services) for every page.

`ClinicalForm` adds the reason for a change (required when editing a saved record) and the
version being edited, and shows every DOMAIN.md rule the record breaks next to its field.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.db import models
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from registry import services
from registry.domain.crs import CrsFindings
from registry.domain.icans import IcansFindings
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Patient,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Transplant,
    Treatment,
)
from registry.models.late_effects import IEC_HS_CRITERIA

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
    "ctcae_grade": "1–5",
    "year_of_birth": "",
}


class DateInput(forms.DateInput):
    """A date that can be typed (YYYY-MM-DD) or picked from the browser's calendar."""

    input_type = "date"

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


def field_label(model: type[models.Model], name: str) -> str:
    """How a page names a field of the model: its verbose name, in the user's language."""
    try:
        return capfirst(model._meta.get_field(name).verbose_name)
    except FieldDoesNotExist:
        return capfirst(name.replace("_", " "))


def add_service_errors(
    form: forms.BaseForm, error: ValidationError, *, skip: Iterable[str] = ()
) -> None:
    """Put each broken rule next to its field; rules about no field of the form go on top,
    named by the field's label. Fields in `skip` already show their own error."""
    skip = set(skip)
    for field, field_messages in error.message_dict.items():
        if field in skip:
            continue
        target = field if field in form.fields else None
        for message in field_messages:
            if target is None and field not in ("__all__", "grade", "cause"):
                message = f"{field_label(form._meta.model, field)}: {message}"
            form.add_error(target, message)


def values_as_parsed(record: models.Model, unparsed: Iterable[str]) -> models.Model:
    """A copy of a record without the values of the fields that did not parse (left as they
    were before the submission): the rules are checked on what the user typed, and only that."""
    record = copy.copy(record)
    for name in unparsed:
        try:
            field = record._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if getattr(field, "concrete", False) and not field.primary_key:
            setattr(record, field.attname, None)
    return record


# The findings a derived grade comes from: when one of them is refused, what the rules say of
# the grade would be about a grade the user did not enter.
GRADE_FINDINGS = {
    CrsEpisode: {f.name for f in dataclasses.fields(CrsFindings)},
    IcansEpisode: {f.name for f in dataclasses.fields(IcansFindings)},
}


def rule_errors(
    record: models.Model,
    *,
    failed: Iterable[str] = (),
    unparsed: Iterable[str] = (),
    together: tuple = (),
) -> dict[str, list[str]]:
    """The DOMAIN.md rules (registry.services) that a submission breaks beside the fields that
    failed their own checks (`failed`), so that every error shows at once: checked on the
    values that parsed (`unparsed` fields are left out), and not repeated on a failed field.
    `together`: the other records the write will save with it (services.full_validate)."""
    unparsed = set(unparsed)
    if unparsed:
        record = values_as_parsed(record, unparsed)
    try:
        services.full_validate(record, together=together)
        return {}
    except ValidationError as error:
        by_field = error.message_dict
    except (ValueError, ObjectDoesNotExist):
        return {}  # a rule needs a parent that did not parse: that field says so
    skip = set(failed) | unparsed
    if skip & GRADE_FINDINGS.get(type(record), set()):
        skip.add("recorded_grade")
    return {field: messages for field, messages in by_field.items() if field not in skip}


MISSING_VERSION = _(
    "The form was sent without the version of the record it edits, so nothing was saved: "
    "reload the page and apply your change again."
)


class ClinicalForm(forms.ModelForm):
    change_reason = forms.CharField(
        label=_("Reason for the change"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required when you edit a saved record; it is kept in the audit trail."),
    )
    # The version the user read (optimistic concurrency): required on every edit, so that a form
    # posted without it cannot overwrite a newer change unseen (services.record_save).
    edited_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk and cleaned.get("edited_version") is None:
            # The field is hidden: its message goes on top of the form, where it is seen.
            self.add_error(None, MISSING_VERSION)
        return cleaned

    def _post_clean(self) -> None:
        """Every error of the submission at once: the fields' own checks, and the DOMAIN.md rules
        (registry.services) on the values that did parse, even when some field failed."""
        # The fields that did not parse keep their old value on the record; those that parsed
        # but break a model field's check (a temperature of -1) have the value typed.
        unparsed = [name for name in self.fields if name not in self.cleaned_data]
        super()._post_clean()
        errors = rule_errors(
            self.instance,
            failed=set(self._errors),
            unparsed=unparsed,
            together=self.written_together(),
        )
        if errors:
            add_service_errors(self, ValidationError(errors))

    def written_together(self) -> tuple:
        """The other records saved with this one (a death's fatal episode)."""
        return ()

    def validate_unique(self) -> None:
        """Uniqueness is a DOMAIN.md rule with its own message (registry.validation), checked
        with the others; Django's would say it a second time, in its own words."""

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


class InfectionForm(ClinicalForm):
    class Meta:
        model = Infection
        fields = ["onset", "site", "organism_class", "ctcae_grade", "treatment_required", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}


class IecHsForm(ClinicalForm):
    class Meta:
        model = IecHsEpisode
        fields = ["onset", *IEC_HS_CRITERIA, "recorded_grade", "treatment_given"]
        widgets = {"treatment_given": forms.Textarea(attrs={"rows": 2})}


class IvigCourseForm(ClinicalForm):
    class Meta:
        model = IvigCourse
        fields = ["start", "stop"]


class CarPersistenceForm(ClinicalForm):
    class Meta:
        model = CarPersistence
        fields = ["date", "method", "detected"]


class SecondCancerForm(ClinicalForm):
    class Meta:
        model = SecondCancer
        fields = [
            "date",
            "cancer_type",
            "t_cell_malignancy",
            "car_transgene_tested",
            "car_transgene_detected",
        ]


class DeathForm(ClinicalForm):
    class Meta:
        model = Death
        fields = ["date", "cause"]

    def written_together(self) -> tuple:
        """A death from CRS or ICANS is saved with its fatal episode, which becomes grade 5
        (services.death_record): the rules see the episode so."""
        episode = self.cleaned_data.get("fatal_episode")
        return () if episode is None else (services.as_fatal(episode),)
