"""The Django admin, for data managers and administrators cleaning data.

Every save and delete goes through registry.services (same rules, same audit as the nurses'
forms and the API); every page is scoped to the user's sites by registry.admin_scope (lists,
records, their history), and the history is read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Exists, Max, OuterRef, Q
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from simple_history.admin import SimpleHistoryAdmin

from registry import quality, services
from registry.admin_links import LinksOnlyWhereAllowed
from registry.admin_scope import SiteScopedAdmin
from registry.api.auth import api_token_create
from registry.forms import ClinicalForm, field_label
from registry.models import (
    ApiToken,
    CarPersistence,
    CrsEpisode,
    DataQualityQuery,
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
    User,
)
from registry.models import choices as labels
from registry.permissions import Action, can, user_site_ids
from registry.selectors import SITE_PATH, scope_to_user

admin.site.site_header = _("ImmunoReg data management")
admin.site.site_title = "ImmunoReg"
admin.site.index_title = _("Registry data")


class ReadOnlyInline(admin.TabularInline):
    """A patient's or treatment's records, shown in place, each edited on its own page."""

    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ClinicalAdmin(SiteScopedAdmin, LinksOnlyWhereAllowed, SimpleHistoryAdmin):
    form = ClinicalForm
    actions = None  # no bulk delete: deletions are one at a time, with a reason

    def has_module_permission(self, request) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_view_permission(self, request, obj=None) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_add_permission(self, request) -> bool:
        return can(request.user, Action.ADMIN_SITE) and can(request.user, Action.EDIT)

    def has_change_permission(self, request, obj=None) -> bool:
        return can(request.user, Action.ADMIN_SITE) and can(request.user, Action.EDIT)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_authenticated and request.user.is_administrator

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related in SITE_PATH:
            kwargs["queryset"] = scope_to_user(related.objects.all(), user=request.user)
        elif related is Site and user_site_ids(request.user) is not None:
            kwargs["queryset"] = Site.objects.filter(pk__in=user_site_ids(request.user))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        services.record_save(
            obj,
            user=request.user,
            reason=form.cleaned_data["change_reason"],
            version=form.cleaned_data.get("edited_version"),
        )

    def save_related(self, request, form, formsets, change) -> None:
        """Inlines are read-only; nothing else is saved behind the services' back."""

    def delete_view(self, request, object_id, extra_context=None):
        self.require_found(request, object_id)
        if request.method == "POST" and not request.POST.get("delete_reason", "").strip():
            messages.error(
                request, _("Give a reason for the deletion; it goes into the audit trail.")
            )
            return HttpResponseRedirect(request.get_full_path())
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as refused:  # the deletion would break a rule: nothing deleted
            self._message_refusal(request, refused)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj) -> None:
        services.record_delete(obj, user=request.user, reason=request.POST["delete_reason"])

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.StaleVersion as stale:
            messages.error(request, str(stale))
        except ValidationError as refused:
            # A rule found only at saving (the form checked the others beside their fields):
            # nothing was saved (the admin's transaction), and the page says why.
            self._message_refusal(request, refused)
        return HttpResponseRedirect(request.get_full_path())

    def _message_refusal(self, request, refused: ValidationError) -> None:
        by_field = (
            refused.message_dict if hasattr(refused, "error_dict") else {"": refused.messages}
        )
        for field, field_messages in by_field.items():
            label = "" if field in ("", "__all__") else field_label(self.model, field)
            for message in field_messages:
                messages.error(request, f"{label}: {message}" if label else message)


# --- Patients -------------------------------------------------------------------------------
class TreatmentInline(ReadOnlyInline):
    model = Treatment
    fields = ("arm", "day0", "disease_burden", "relapse_status", "crs_status", "icans_status")
    readonly_fields = fields


class DeathInline(ReadOnlyInline):
    model = Death
    fields = ("date", "cause")
    readonly_fields = fields


class QueryInline(ReadOnlyInline):
    model = DataQualityQuery
    fields = ("kind", "text", "is_open", "opened_at", "closed_at")
    readonly_fields = fields
    verbose_name_plural = _("data-quality queries")


# A site filter offers the sites of the rows the user may see, not every site of the registry.
SITES_OF_THE_USER = ("site", admin.RelatedOnlyFieldListFilter)


class ArmFilter(admin.SimpleListFilter):
    title = _("arm")
    parameter_name = "arm"

    def lookups(self, request, model_admin):
        return labels.ARM

    def queryset(self, request, queryset):
        return (
            queryset.filter(treatments__arm=self.value()).distinct() if self.value() else queryset
        )


class BurdenFilter(admin.SimpleListFilter):
    title = _("disease burden")
    parameter_name = "burden"

    def lookups(self, request, model_admin):
        return labels.DISEASE_BURDEN

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(treatments__disease_burden=self.value()).distinct()


class CrsGradeFilter(admin.SimpleListFilter):
    title = _("worst CRS grade")
    parameter_name = "crs_grade"

    def lookups(self, request, model_admin):
        return [("none", _("No CRS episode")), *[(str(g), str(g)) for g in range(1, 6)]]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if self.value() == "none":
            return queryset.exclude(treatments__crs_episodes__isnull=False)
        if self.value() not in {str(grade) for grade in range(1, 6)}:
            raise IncorrectLookupParameters(f"worst CRS grade {self.value()!r}")  # a 400
        grade = int(self.value())
        episodes = CrsEpisode.objects.filter(treatment__patient=OuterRef("pk"))
        worse = episodes.filter(
            Q(derived_grade__gt=grade) | Q(derived_grade__isnull=True, recorded_grade__gt=grade)
        )
        exact = episodes.filter(
            Q(derived_grade=grade) | Q(derived_grade__isnull=True, recorded_grade=grade)
        )
        return queryset.filter(Exists(exact)).exclude(Exists(worse))


class TransplantFilter(admin.SimpleListFilter):
    title = _("transplant after treatment")
    parameter_name = "transplant"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        has = Exists(Transplant.objects.filter(treatment__patient=OuterRef("pk")))
        return {"yes": queryset.filter(has), "no": queryset.exclude(has)}.get(
            self.value(), queryset
        )


class VitalStatusFilter(admin.SimpleListFilter):
    title = _("vital status")
    parameter_name = "vital"

    def lookups(self, request, model_admin):
        return [("alive", _("Alive")), ("dead", _("Dead"))]

    def queryset(self, request, queryset):
        dead = Exists(Death.objects.filter(patient=OuterRef("pk")))
        return {"alive": queryset.exclude(dead), "dead": queryset.filter(dead)}.get(
            self.value(), queryset
        )


@admin.register(Patient)
class PatientAdmin(ClinicalAdmin):
    list_display = ("study_id", "site", "sex", "year_of_birth", "ph_status", "open_queries")
    list_filter = (
        SITES_OF_THE_USER,
        ArmFilter,
        BurdenFilter,
        CrsGradeFilter,
        TransplantFilter,
        VitalStatusFilter,
    )
    search_fields = ("study_id",)
    inlines = [TreatmentInline, DeathInline, QueryInline]
    list_select_related = ("site",)

    def get_queryset(self, request):
        open_count = DataQualityQuery.objects.filter(patient=OuterRef("pk"), is_open=True)
        return super().get_queryset(request).annotate(has_open_queries=Exists(open_count))

    @admin.display(boolean=True, description=_("open queries"))
    def open_queries(self, patient) -> bool:
        return patient.has_open_queries


# --- Treatments and the records hanging off them --------------------------------------------
def _inline(model_, fields_):
    return type(
        f"{model_.__name__}Inline",
        (ReadOnlyInline,),
        {"model": model_, "fields": fields_, "readonly_fields": fields_},
    )


@admin.register(Treatment)
class TreatmentAdmin(ClinicalAdmin):
    list_display = (
        "patient",
        "arm",
        "day0",
        "disease_burden",
        "relapse_status",
        "crs_status",
        "worst_crs_grade",
    )
    list_filter = (
        ("patient__site", admin.RelatedOnlyFieldListFilter),
        "arm",
        "disease_burden",
        "relapse_status",
        "crs_status",
        "icans_status",
    )
    search_fields = ("patient__study_id",)
    list_select_related = ("patient", "patient__site")
    autocomplete_fields = ("patient",)
    inlines = [
        _inline(CrsEpisode, ("onset", "grading_system", "recorded_grade", "derived_grade")),
        _inline(IcansEpisode, ("onset", "grading_system", "recorded_grade", "derived_grade")),
        _inline(ResponseAssessment, ("date", "response", "mrd_status")),
        _inline(Transplant, ("date", "type")),
        _inline(Relapse, ("date", "kind", "cd19_status")),
        _inline(FollowUpContact, ("date", "disease_status", "b_cell_aplasia")),
        _inline(LabValue, ("date", "anc_per_ul", "platelets_10e9_l", "haemoglobin_g_dl")),
        _inline(Infection, ("onset", "site", "organism_class", "ctcae_grade")),
        _inline(IecHsEpisode, ("onset", "recorded_grade")),
        _inline(IvigCourse, ("start", "stop")),
        _inline(CarPersistence, ("date", "method", "detected")),
        _inline(SecondCancer, ("date", "cancer_type", "t_cell_malignancy")),
    ]
    readonly_fields = ("icaht_early", "icaht_late")

    @admin.display(description=_("early ICAHT (derived)"))
    def icaht_early(self, treatment) -> str:
        return _icaht_summary(treatment.icaht_early_grade, treatment.icaht_early_reason)

    @admin.display(description=_("late ICAHT (derived)"))
    def icaht_late(self, treatment) -> str:
        return _icaht_summary(treatment.icaht_late_grade, treatment.icaht_late_reason)

    def get_queryset(self, request):
        worst = Max("crs_episodes__derived_grade")
        return super().get_queryset(request).annotate(worst_crs=worst)

    @admin.display(description=_("worst CRS grade (ASTCT)"), ordering="worst_crs")
    def worst_crs_grade(self, treatment):
        return treatment.worst_crs


def _icaht_summary(grade: int | None, reason: str) -> str:
    if not reason:
        return ""
    if grade is None:
        return reason
    return _("Grade %(grade)s: %(reason)s") % {"grade": grade, "reason": reason}


class TreatmentChildAdmin(ClinicalAdmin):
    list_select_related = ("treatment", "treatment__patient", "treatment__patient__site")
    search_fields = ("treatment__patient__study_id",)
    autocomplete_fields = ("treatment",)
    list_filter = (("treatment__patient__site", admin.RelatedOnlyFieldListFilter), "treatment__arm")


@admin.register(CrsEpisode)
class CrsEpisodeAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "onset", "grading_system", "recorded_grade", "derived_grade")
    list_filter = (*TreatmentChildAdmin.list_filter, "grading_system", "derived_grade")
    readonly_fields = ("derived_grade",)


@admin.register(IcansEpisode)
class IcansEpisodeAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "onset", "grading_system", "recorded_grade", "derived_grade")
    list_filter = (*TreatmentChildAdmin.list_filter, "grading_system", "derived_grade")
    readonly_fields = ("derived_grade",)


@admin.register(ResponseAssessment)
class ResponseAssessmentAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "response", "mrd_status")
    list_filter = (*TreatmentChildAdmin.list_filter, "response", "mrd_status")
    readonly_fields = ("mrd_status",)


@admin.register(Transplant)
class TransplantAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "type")
    list_filter = (*TreatmentChildAdmin.list_filter, "type")


@admin.register(FollowUpContact)
class FollowUpContactAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "disease_status", "b_cell_aplasia")


@admin.register(Relapse)
class RelapseAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "kind", "cd19_status")


@admin.register(LabValue)
class LabValueAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "anc_per_ul", "platelets_10e9_l", "haemoglobin_g_dl")

    def scope_queryset(self, request, queryset):
        # registry.selectors.SITE_PATH does not list lab values yet: scoped by the same path
        sites = user_site_ids(request.user)
        if sites is None:
            return queryset
        return queryset.filter(treatment__patient__site__in=sites)


# --- The late events (DOMAIN.md "Hematotoxicity and late effects") ----------------------------
@admin.register(Infection)
class InfectionAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "onset", "site", "organism_class", "ctcae_grade")
    list_filter = (*TreatmentChildAdmin.list_filter, "site", "organism_class", "ctcae_grade")


@admin.register(IecHsEpisode)
class IecHsEpisodeAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "onset", "recorded_grade")
    list_filter = (*TreatmentChildAdmin.list_filter, "recorded_grade")


@admin.register(IvigCourse)
class IvigCourseAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "start", "stop")


@admin.register(CarPersistence)
class CarPersistenceAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "method", "detected")
    list_filter = (*TreatmentChildAdmin.list_filter, "method", "detected")


@admin.register(SecondCancer)
class SecondCancerAdmin(TreatmentChildAdmin):
    list_display = ("treatment", "date", "cancer_type", "t_cell_malignancy")
    list_filter = (*TreatmentChildAdmin.list_filter, "t_cell_malignancy")


@admin.register(Death)
class DeathAdmin(ClinicalAdmin):
    list_display = ("patient", "date", "cause")
    list_filter = (("patient__site", admin.RelatedOnlyFieldListFilter), "cause")
    search_fields = ("patient__study_id",)
    list_select_related = ("patient", "patient__site")
    autocomplete_fields = ("patient",)


# --- Data-quality queries -------------------------------------------------------------------
class QueryCloseForm(forms.ModelForm):
    class Meta:
        model = DataQualityQuery
        fields = ("close_reason",)


class QueryStatusFilter(admin.SimpleListFilter):
    """Open queries unless the data manager asks for the closed ones or all: the closed ones
    (most of them, closed by the registry when the data was fixed) are history, not work."""

    title = _("status")
    parameter_name = "status"
    default = "open"

    def lookups(self, request, model_admin):
        return [
            ("open", pgettext_lazy("data-quality query", "Open")),
            ("closed", pgettext_lazy("data-quality query", "Closed")),
            ("all", _("All")),
        ]

    def value(self) -> str:
        chosen = super().value()
        return chosen if chosen in ("open", "closed", "all") else self.default

    def choices(self, changelist):
        # Django's own first choice, "All" without the parameter, would mean the default here;
        # "All" is a choice of its own instead.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        return {
            "open": queryset.filter(is_open=True),
            "closed": queryset.filter(is_open=False),
        }.get(self.value(), queryset)


@admin.register(DataQualityQuery)
class DataQualityQueryAdmin(SiteScopedAdmin, LinksOnlyWhereAllowed, SimpleHistoryAdmin):
    """Queries open and close themselves; a data manager may close one the data cannot fix."""

    form = QueryCloseForm
    list_display = ("patient", "kind", "text", "is_open", "opened_at", "closed_at", "closed_by")
    list_filter = (QueryStatusFilter, "kind", ("patient__site", admin.RelatedOnlyFieldListFilter))
    list_per_page = 50
    search_fields = ("patient__study_id",)
    list_select_related = ("patient", "patient__site", "closed_by")
    readonly_fields = (
        "patient",
        "kind",
        "text",
        "is_open",
        "opened_at",
        "closed_at",
        "closed_by",
    )
    actions = None

    def has_module_permission(self, request) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_view_permission(self, request, obj=None) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_change_permission(self, request, obj=None) -> bool:
        return can(request.user, Action.RESOLVE_QUERIES) and (obj is None or obj.is_open)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        quality.query_close(obj, user=request.user, reason=form.cleaned_data["close_reason"])

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as refused:  # closed meanwhile: nothing saved, and why
            for message in refused.messages:
                messages.error(request, message)
        return HttpResponseRedirect(request.get_full_path())

    def get_changeform_initial_data(self, request):
        return {}


# --- Sites and users: administrators only -----------------------------------------------------
class AdministratorsOnly:
    def has_module_permission(self, request) -> bool:
        return request.user.is_authenticated and request.user.is_administrator

    has_view_permission = has_add_permission = has_change_permission = (
        lambda self, request, obj=None: (
            request.user.is_authenticated and request.user.is_administrator
        )
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(SiteScopedAdmin, AdministratorsOnly, SimpleHistoryAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(User)
class RegistryUserAdmin(SiteScopedAdmin, AdministratorsOnly, UserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "is_active")
    list_filter = ("role", "sites", "is_active")
    fieldsets = (*UserAdmin.fieldsets, (_("Registry"), {"fields": ("role", "sites", "language")}))
    add_fieldsets = (*UserAdmin.add_fieldsets, (_("Registry"), {"fields": ("role", "sites")}))
    filter_horizontal = ("sites", "groups", "user_permissions")


class ApiTokenAddForm(forms.ModelForm):
    days = forms.IntegerField(
        label=_("valid for (days)"), min_value=1, max_value=366, initial=90, required=True
    )

    class Meta:
        model = ApiToken
        fields = ("user", "name", "read_only")


@admin.register(ApiToken)
class ApiTokenAdmin(AdministratorsOnly, admin.ModelAdmin):
    """Administrators make keys for scripts (the key is shown once, in a message) and revoke
    them by deleting; a key is never changed or shown again."""

    list_display = ("prefix", "user", "name", "read_only", "created_at", "expires_at")
    list_filter = ("read_only",)
    search_fields = ("user__username", "name", "prefix")
    readonly_fields = ("user", "name", "prefix", "read_only", "created_at", "expires_at")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
            kwargs["fields"] = ("user", "name", "read_only", "days")
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name", "read_only", "days")
        return self.readonly_fields

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_authenticated and request.user.is_administrator

    def save_model(self, request, obj, form, change) -> None:
        token, key = api_token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            read_only=form.cleaned_data["read_only"],
            days=form.cleaned_data["days"],
        )
        for field in ApiToken._meta.concrete_fields:  # the admin logs and redirects to it
            setattr(obj, field.attname, getattr(token, field.attname))
        self.message_user(
            request,
            _("The token's key, shown only now (copy it to the script): %(key)s") % {"key": key},
            messages.WARNING,
        )


from registry import admin_exchange  # noqa: E402, F401  (cohort import upload, import/export logs)
