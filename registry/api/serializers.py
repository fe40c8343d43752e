"""What the API reads and writes: the same fields as the forms, plus id, version and timestamps.

Serializers only check the shape of the input (types, choices, lengths); every DOMAIN.md rule
is applied by registry.services when the view saves, so the API answers with the same messages
as the forms. Related records are looked up among those the user may see: another site's
treatment is "does not exist".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.settings import api_settings
from rest_framework.validators import UniqueValidator

from registry import forms as record_forms
from registry import services
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Site,
    Transplant,
    Treatment,
)
from registry.models.labs import LAB_FIELDS
from registry.permissions import Action, can
from registry.selectors import SITE_PATH, records_visible_to, site_id_of

READ_ONLY = ["id", "version", "created_at", "updated_at"]
NOT_TYPED = {"id", "version", "created_at", "updated_at"}


def _is_model_field(model, name: str) -> bool:
    try:
        return model._meta.get_field(name).concrete
    except FieldDoesNotExist:
        return False


class ClinicalSerializer(serializers.ModelSerializer):
    """A clinical record. An update must carry the `version` it edits and a `reason`."""

    version = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text=_(
            "The version you read. Required on update: if the record changed since, the update "
            "is refused with 409 and nothing changes."
        ),
    )
    reason = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text=_("Why the record is changed (required on update; kept in the audit trail)."),
    )

    class Meta:
        validators: list = []  # uniqueness is a DOMAIN.md rule, checked by registry.services

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        for field in fields.values():
            model = getattr(getattr(field, "queryset", None), "model", None)
            if model in SITE_PATH and user is not None:
                field.queryset = records_visible_to(model, user=user)
            field.validators = [v for v in field.validators if not isinstance(v, UniqueValidator)]
        return fields

    def validate(self, attrs):
        if self.instance is not None and "version" not in attrs:
            raise serializers.ValidationError(
                {"version": [_("Give the version you edited (optimistic concurrency).")]}
            )
        return attrs

    def to_internal_value(self, data):
        """Every error of a request at once: when a field is refused, the DOMAIN.md rules are
        checked too on the fields that were accepted (the view applies them otherwise)."""
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as refused:
            if not isinstance(refused.detail, dict) or not isinstance(data, Mapping):
                raise
            rules = self._rule_errors(data, failed=set(refused.detail))
            raise serializers.ValidationError(rules | refused.detail) from refused

    def _rule_errors(self, data: Mapping, *, failed: set[str]) -> dict[str, list[str]]:
        accepted = {}
        for field in self._writable_fields:
            if field.field_name in failed:
                continue
            try:
                accepted[field.source] = field.run_validation(field.get_value(data))
            except (serializers.ValidationError, DjangoValidationError, SkipField):
                continue
        model = self.Meta.model
        record = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in accepted.items():
            if name not in NOT_TYPED and _is_model_field(model, name):
                setattr(record, name, value)
        request = self.context.get("request")
        try:
            allowed = can(request.user, Action.EDIT, site_id_of(record))
        except (ObjectDoesNotExist, AttributeError):
            allowed = False  # no parent, or not one of the user's: that field says so
        if not allowed:
            return {}
        fatal = accepted.get("fatal_crs_episode") or accepted.get("fatal_icans_episode")
        together = () if fatal is None else (services.as_fatal(fatal),)
        errors = record_forms.rule_errors(record, failed=failed, unparsed=failed, together=together)
        return {
            api_settings.NON_FIELD_ERRORS_KEY if field == "__all__" else field: messages
            for field, messages in errors.items()
        }


def _fields(form: type[record_forms.ClinicalForm], parent: str | None, *extra: str) -> list[str]:
    return [*READ_ONLY, *([parent] if parent else []), *form._meta.fields, *extra, "reason"]


class PatientSerializer(ClinicalSerializer):
    site = serializers.SlugRelatedField(slug_field="code", queryset=Site.objects.all())

    class Meta(ClinicalSerializer.Meta):
        model = Patient
        fields = _fields(record_forms.PatientForm, None)


# ICAHT as derived from the treatment's lab series (registry.services): read, never written.
ICAHT_FIELDS = (
    "icaht_early_grade",
    "icaht_early_rule",
    "icaht_early_reason",
    "icaht_late_grade",
    "icaht_late_rule",
    "icaht_late_reason",
)


class TreatmentSerializer(ClinicalSerializer):
    icaht_early_reason = serializers.CharField(
        read_only=True,
        help_text=_("What gave the early ICAHT grade, or why there is none."),
    )
    icaht_late_reason = serializers.CharField(
        read_only=True,
        help_text=_("What gave the late ICAHT grade, or why there is none."),
    )

    class Meta(ClinicalSerializer.Meta):
        model = Treatment
        fields = _fields(record_forms.TreatmentForm, "patient", *ICAHT_FIELDS)
        read_only_fields = [name for name in ICAHT_FIELDS if not name.endswith("_reason")]


class CrsEpisodeSerializer(ClinicalSerializer):
    grade = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta(ClinicalSerializer.Meta):
        model = CrsEpisode
        fields = _fields(record_forms.CrsEpisodeForm, "treatment", "derived_grade", "grade")
        read_only_fields = ["derived_grade"]


class IcansEpisodeSerializer(ClinicalSerializer):
    grade = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta(ClinicalSerializer.Meta):
        model = IcansEpisode
        fields = _fields(record_forms.IcansEpisodeForm, "treatment", "derived_grade", "grade")
        read_only_fields = ["derived_grade"]


class ResponseSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = ResponseAssessment
        fields = _fields(record_forms.ResponseForm, "treatment", "mrd_reported", "mrd_status")
        read_only_fields = ["mrd_status"]


class TransplantSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = Transplant
        fields = _fields(record_forms.TransplantForm, "treatment")


class ContactSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = FollowUpContact
        fields = _fields(record_forms.ContactForm, "treatment")


class RelapseSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = Relapse
        fields = _fields(record_forms.RelapseForm, "treatment")


class InfectionSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = Infection
        fields = _fields(record_forms.InfectionForm, "treatment")


class IecHsEpisodeSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = IecHsEpisode
        fields = _fields(record_forms.IecHsForm, "treatment")


class IvigCourseSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = IvigCourse
        fields = _fields(record_forms.IvigCourseForm, "treatment")


class CarPersistenceSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = CarPersistence
        fields = _fields(record_forms.CarPersistenceForm, "treatment")


class SecondCancerSerializer(ClinicalSerializer):
    class Meta(ClinicalSerializer.Meta):
        model = SecondCancer
        fields = _fields(record_forms.SecondCancerForm, "treatment")


class DeathSerializer(ClinicalSerializer):
    fatal_crs_episode = serializers.PrimaryKeyRelatedField(
        queryset=CrsEpisode.objects.all(),
        write_only=True,
        required=False,
        allow_null=True,
        help_text=_("For a death from CRS: the fatal episode, which becomes grade 5."),
    )
    fatal_icans_episode = serializers.PrimaryKeyRelatedField(
        queryset=IcansEpisode.objects.all(),
        write_only=True,
        required=False,
        allow_null=True,
        help_text=_("For a death from ICANS: the fatal episode, which becomes grade 5."),
    )

    class Meta(ClinicalSerializer.Meta):
        model = Death
        fields = _fields(
            record_forms.DeathForm, "patient", "fatal_crs_episode", "fatal_icans_episode"
        )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("fatal_crs_episode") and attrs.get("fatal_icans_episode"):
            raise serializers.ValidationError(
                {"fatal_icans_episode": [_("Name one fatal episode, CRS or ICANS.")]}
            )
        return attrs


class LabValueSerializer(serializers.ModelSerializer):
    """One day's laboratory values of a treatment, as read."""

    class Meta:
        model = LabValue
        fields = [*READ_ONLY, "treatment", "date", *LAB_FIELDS]
        read_only_fields = fields


def _lab_number(integer: bool) -> serializers.Field:
    # The shape only: each column's range and decimals are registry.services' rules.
    if integer:
        return serializers.IntegerField(required=False, allow_null=True)
    return serializers.DecimalField(
        max_digits=None, decimal_places=None, required=False, allow_null=True
    )


class LabRowSerializer(serializers.Serializer):
    """A row of the grid: a new one (no id), a change to a saved one (its id and version), or a
    saved one deleted (its id, version and delete)."""

    id = serializers.IntegerField(
        required=False, min_value=1, help_text=_("A saved row's id; none for a new row.")
    )
    version = serializers.IntegerField(
        required=False, min_value=1, help_text=_("The version of the saved row you read.")
    )
    delete = serializers.BooleanField(
        required=False,
        help_text=_("True deletes this saved row (administrators only, with the reason)."),
    )
    date = serializers.DateField(required=False)
    anc_per_ul = _lab_number(True)
    platelets_10e9_l = _lab_number(True)
    haemoglobin_g_dl = _lab_number(False)
    crp_mg_l = _lab_number(False)
    ferritin_ng_ml = _lab_number(True)
    igg_g_l = _lab_number(False)
    cd19_b_cells_per_ul = _lab_number(False)


class LabSeriesSerializer(serializers.Serializer):
    """Rows of one treatment's laboratory values, written together or not at all."""

    treatment = serializers.PrimaryKeyRelatedField(queryset=Treatment.objects.all())
    rows = LabRowSerializer(many=True, allow_empty=False, max_length=1000)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text=_("Why saved rows are changed (required then; kept in the audit trail)."),
    )

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            fields["treatment"].queryset = records_visible_to(Treatment, user=request.user)
        return fields


class AnalyticsSnapshotSerializer(serializers.Serializer):
    """The latest complete analytics snapshot of one scope: its SAP.md section 10 JSON."""

    id = serializers.IntegerField()
    site = serializers.CharField(
        source="site.code", allow_null=True, default=None, help_text=_("null: whole registry.")
    )
    finished_at = serializers.DateTimeField()
    fingerprint = serializers.CharField(help_text=_("SHA-256 of the input data."))
    code_version = serializers.CharField()
    output = serializers.JSONField(help_text=_("The analytics JSON of SAP.md sections 10 and 15."))


class ReportSerializer(serializers.Serializer):
    """A monthly PDF report in the archive; the PDF itself is at `download`."""

    id = serializers.IntegerField()
    site = serializers.CharField(
        source="site.code", allow_null=True, default=None, help_text=_("null: whole registry.")
    )
    month = serializers.DateField(help_text=_("The first day of the month reported."))
    language = serializers.ChoiceField(choices=settings.LANGUAGES)
    size_bytes = serializers.IntegerField(help_text=_("The size of the PDF, in bytes."))
    trigger = serializers.CharField(
        help_text=_("What rendered it: monthly, on_demand (a user) or command.")
    )
    created_at = serializers.DateTimeField(help_text=_("When it was rendered."))
    snapshot = serializers.IntegerField(
        source="snapshot_id", help_text=_("The analytics snapshot every number in it came from.")
    )
    download = serializers.HyperlinkedIdentityField(
        view_name="api:report-download", help_text=_("The PDF; each download is logged.")
    )
