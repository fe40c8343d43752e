"""REST API under /api/v1/ (INTERFACES.md section 4): list, retrieve, create and update.

Reads go through registry.selectors (another site's record is a 404), writes through
registry.services (the same rules, messages and audit as the forms). Nothing is deleted here
but a day's laboratory values (DELETE /api/v1/labs/<id>/, the lab grid's deletion):
administrators delete, with a reason, in the admin. An update carries the version it edits; a
stale one is refused with 409 Conflict and changes nothing. The latest analytics and the monthly
report archive are read-only, scoped and logged as on the analytics pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, generics, mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.settings import api_settings

from registry import services
from registry.api import serializers as api
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
    Transplant,
    Treatment,
)
from registry.models import choices as labels
from registry.permissions import Action, can, user_site_ids
from registry.selectors import SITE_PATH, records_visible_to

MAX_ID = 2**63 - 1  # BigAutoField


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The record changed since you read it.")
    default_code = "stale_version"


@contextmanager
def service_errors() -> Iterator[None]:
    """registry.services' refusals as API answers: 400 with messages by field, 409 if stale.

    (Django's PermissionDenied already becomes 403.)
    """
    try:
        yield
    except DjangoValidationError as error:
        if hasattr(error, "error_dict"):
            detail = {
                api_settings.NON_FIELD_ERRORS_KEY if field == "__all__" else field: messages
                for field, messages in error.message_dict.items()
            }
        else:
            detail = {api_settings.NON_FIELD_ERRORS_KEY: error.messages}
        raise exceptions.ValidationError(detail) from error
    except services.StaleVersion as stale:
        raise Conflict(str(stale)) from stale


class ClinicalDataPermission(permissions.BasePermission):
    """Any signed-in user reads (their sites, by the querysets); only editors write."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return can(request.user, Action.EDIT)


def clinical_filterset(model: type[Model], *, date_field: str) -> type[django_filters.FilterSet]:
    """Filters every list has: site code, arm, a date range, and records updated since."""
    site_path = SITE_PATH[model]
    arm_path = {Patient: "treatments__arm", Treatment: "arm", Death: "patient__treatments__arm"}
    arm_field = arm_path.get(model, "treatment__arm")
    attributes = {
        "site": django_filters.CharFilter(field_name=f"{site_path}__code", label=_("Site code")),
        "arm": django_filters.ChoiceFilter(
            field_name=arm_field, choices=labels.ARM, distinct=True, label=_("Arm")
        ),
        "date_from": django_filters.DateFilter(
            field_name=date_field, lookup_expr="gte", distinct=True, label=_("From this date")
        ),
        "date_to": django_filters.DateFilter(
            field_name=date_field, lookup_expr="lte", distinct=True, label=_("Up to this date")
        ),
        "updated_since": django_filters.IsoDateTimeFilter(
            field_name="updated_at", lookup_expr="gte", label=_("Changed at or after")
        ),
        "Meta": type("Meta", (), {"model": model, "fields": []}),
    }
    parent = {Patient: None, Treatment: "patient", Death: "patient"}.get(model, "treatment")
    if parent:
        attributes[parent] = django_filters.NumberFilter(
            field_name=f"{parent}_id", min_value=1, max_value=MAX_ID, label=_("Parent record id")
        )
    return type(f"{model.__name__}Filter", (django_filters.FilterSet,), attributes)


class ClinicalViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [ClinicalDataPermission]
    model: type[Model]
    related: tuple[str, ...] = ()

    def get_queryset(self) -> QuerySet:
        queryset = records_visible_to(self.model, user=self.request.user)
        return queryset.select_related(*self.related).order_by("pk")

    def perform_create(self, serializer) -> None:
        fields = {k: v for k, v in serializer.validated_data.items() if k not in ("version",)}
        reason = fields.pop("reason", "")
        with service_errors():
            serializer.instance = services.record_create(
                self.model, user=self.request.user, reason=reason, **fields
            )

    def perform_update(self, serializer) -> None:
        fields = dict(serializer.validated_data)
        version = fields.pop("version")
        reason = fields.pop("reason", "")
        with service_errors():
            serializer.instance = services.record_update(
                serializer.instance,
                user=self.request.user,
                reason=reason,
                version=version,
                **fields,
            )


def _described(name: str, date_field: str):
    responses = {409: OpenApiResponse(description=_("Stale version: the record changed."))}
    return extend_schema_view(
        list=extend_schema(
            summary=f"List {name} at your sites",
            description=f"Paginated; date_from / date_to filter on {date_field}.",
        ),
        retrieve=extend_schema(summary=f"One of the {name}"),
        create=extend_schema(summary=f"Add to the {name}"),
        update=extend_schema(
            summary=f"Change one of the {name}", responses={200: None, **responses}
        ),
        partial_update=extend_schema(
            summary=f"Change some fields of one of the {name}", responses={200: None, **responses}
        ),
    )


def _viewset(
    model: type[Model],
    serializer: type[api.ClinicalSerializer],
    *,
    name: str,
    date_field: str,
    related: tuple[str, ...] = (),
) -> type[ClinicalViewSet]:
    viewset = type(
        f"{model.__name__}ViewSet",
        (ClinicalViewSet,),
        {
            "model": model,
            "serializer_class": serializer,
            "filterset_class": clinical_filterset(model, date_field=date_field),
            "related": related,
            "__doc__": f"The {name} at your sites.",
        },
    )
    return _described(name, date_field)(viewset)


PatientViewSet = _viewset(
    Patient,
    api.PatientSerializer,
    name="patients",
    date_field="treatments__day0",
    related=("site",),
)
TreatmentViewSet = _viewset(
    Treatment, api.TreatmentSerializer, name="index treatments", date_field="day0"
)
CrsEpisodeViewSet = _viewset(
    CrsEpisode, api.CrsEpisodeSerializer, name="CRS episodes", date_field="onset"
)
IcansEpisodeViewSet = _viewset(
    IcansEpisode, api.IcansEpisodeSerializer, name="ICANS episodes", date_field="onset"
)
ResponseViewSet = _viewset(
    ResponseAssessment, api.ResponseSerializer, name="response assessments", date_field="date"
)
TransplantViewSet = _viewset(
    Transplant, api.TransplantSerializer, name="transplants", date_field="date"
)
ContactViewSet = _viewset(
    FollowUpContact, api.ContactSerializer, name="follow-up contacts", date_field="date"
)
RelapseViewSet = _viewset(Relapse, api.RelapseSerializer, name="relapses", date_field="date")
# The late events (DOMAIN.md "Hematotoxicity and late effects")
InfectionViewSet = _viewset(
    Infection, api.InfectionSerializer, name="infections", date_field="onset"
)
IecHsEpisodeViewSet = _viewset(
    IecHsEpisode, api.IecHsEpisodeSerializer, name="IEC-HS episodes", date_field="onset"
)
IvigCourseViewSet = _viewset(
    IvigCourse,
    api.IvigCourseSerializer,
    name="immunoglobulin replacement courses",
    date_field="start",
)
CarPersistenceViewSet = _viewset(
    CarPersistence,
    api.CarPersistenceSerializer,
    name="CAR persistence assessments",
    date_field="date",
)
SecondCancerViewSet = _viewset(
    SecondCancer, api.SecondCancerSerializer, name="second cancers", date_field="date"
)


class DeathViewSet(_viewset(Death, api.DeathSerializer, name="deaths", date_field="date")):
    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        fatal = data.get("fatal_crs_episode") or data.get("fatal_icans_episode")
        with service_errors():
            serializer.instance = services.death_record(
                patient=data["patient"],
                user=self.request.user,
                date=data["date"],
                cause=data["cause"],
                reason=data.get("reason", ""),
                fatal_episode=fatal,
            )

    def perform_update(self, serializer) -> None:
        for name in ("fatal_crs_episode", "fatal_icans_episode"):
            serializer.validated_data.pop(name, None)
        super().perform_update(serializer)


class LabValueFilter(django_filters.FilterSet):
    treatment = django_filters.NumberFilter(
        field_name="treatment_id", min_value=1, max_value=MAX_ID, label=_("Parent record id")
    )
    site = django_filters.CharFilter(
        field_name="treatment__patient__site__code", label=_("Site code")
    )
    date_from = django_filters.DateFilter(
        field_name="date", lookup_expr="gte", label=_("From this date")
    )
    date_to = django_filters.DateFilter(
        field_name="date", lookup_expr="lte", label=_("Up to this date")
    )
    updated_since = django_filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", label=_("Changed at or after")
    )

    class Meta:
        model = LabValue
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(
        summary="List laboratory values at your sites",
        description="Paginated; filter by treatment; date_from / date_to filter on date.",
    ),
    retrieve=extend_schema(summary="One day's laboratory values"),
    create=extend_schema(
        summary="Save rows of one treatment's laboratory values together",
        description=(
            "New rows (no id) and changes to saved rows (id, version; a reason) of one "
            "treatment, all saved or none: a refusal answers 400 with `rows`, one object per "
            "row sent, holding that row's messages by column. The treatment's ICAHT grades are "
            "derived again in the same write."
        ),
        request=api.LabSeriesSerializer,
        responses={201: api.LabValueSerializer(many=True)},
    ),
    destroy=extend_schema(
        summary="Delete one day's laboratory values (administrators, with a reason)",
        description=(
            "Administrators only (INTERFACES.md section 5), with `?reason=` (kept in the audit "
            "trail) and optionally `&version=` (the version you read; a stale one answers 409). "
            "The same write as a grid row marked delete: the treatment's ICAHT grades are "
            "derived again with it."
        ),
        parameters=[
            OpenApiParameter("reason", str, required=True, description="Why it is deleted."),
            OpenApiParameter("version", int, description="The version of the row you read."),
        ],
        responses={
            204: None,
            400: OpenApiResponse(description="No reason."),
            403: OpenApiResponse(description="Not an administrator."),
            404: OpenApiResponse(description="No such value at your sites."),
            409: OpenApiResponse(description="Stale version: the row changed."),
        },
    ),
)
class LabValueViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The laboratory values at your sites; written a treatment's rows at a time."""

    permission_classes = [ClinicalDataPermission]
    serializer_class = api.LabValueSerializer
    filterset_class = LabValueFilter

    def get_queryset(self) -> QuerySet:
        # registry.selectors.SITE_PATH does not list lab values yet: scoped by the same path
        queryset = LabValue.objects.order_by("pk")
        sites = user_site_ids(self.request.user)
        if sites is None:
            return queryset
        return queryset.filter(treatment__patient__site__in=sites)

    def get_serializer_class(self):
        return api.LabSeriesSerializer if self.action == "create" else api.LabValueSerializer

    def create(self, request, *args, **kwargs) -> Response:
        series = self.get_serializer(data=request.data)
        series.is_valid(raise_exception=True)
        data = series.validated_data
        with service_errors():
            try:
                written = services.lab_series_save(
                    treatment=data["treatment"],
                    rows=data["rows"],
                    user=request.user,
                    reason=data.get("reason", ""),
                )
            except services.LabSeriesRefused as refused:
                rows = [
                    {
                        api_settings.NON_FIELD_ERRORS_KEY if column == "__all__" else column: msgs
                        for column, msgs in refused.rows.get(index, {}).items()
                    }
                    for index in range(len(data["rows"]))
                ]
                raise exceptions.ValidationError({"rows": rows}) from refused
        return Response(
            api.LabValueSerializer(written, many=True).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request, *args, **kwargs) -> Response:
        lab = self.get_object()  # another site's value: 404
        treatment = Treatment.objects.select_related("patient").get(pk=lab.treatment_id)
        if not can(request.user, Action.DELETE, treatment.patient.site_id):
            raise exceptions.PermissionDenied(_("Only administrators may delete clinical data."))
        row = {"id": lab.pk, "version": request.query_params.get("version", ""), "delete": True}
        with service_errors():
            try:
                services.lab_series_save(
                    treatment=treatment,
                    rows=[row],
                    user=request.user,
                    reason=request.query_params.get("reason", ""),
                )
            except services.LabSeriesRefused as refused:
                columns = refused.rows.get(0, {})
                if "version" in columns:
                    raise Conflict(columns["version"][0]) from refused
                raise exceptions.ValidationError(columns) from refused
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnalyticsLatestView(generics.GenericAPIView):
    """The latest complete analytics snapshot (SAP.md section 10) of the whole registry, or of
    one of your sites with `?site=CODE`. Read-only."""

    serializer_class = api.AnalyticsSnapshotSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("site", str, description="Site code; without it, the whole registry.")
        ],
        responses={
            200: api.AnalyticsSnapshotSerializer,
            403: OpenApiResponse(description="Not your role, or not every site is yours."),
            404: OpenApiResponse(description="No such site of yours, or nothing computed yet."),
        },
    )
    def get(self, request, *args, **kwargs) -> Response:
        from analytics import services as analytics  # the analytics app builds on the registry
        from analytics.models import Snapshot

        if not can(request.user, Action.ANALYTICS):
            raise exceptions.PermissionDenied(
                _("Analytics are for data managers, PIs and administrators.")
            )
        visible = analytics.scopes_visible_to(request.user)
        code = request.query_params.get("site") or None
        if code is None:
            if None not in visible:
                raise exceptions.PermissionDenied(
                    _("The whole registry's analytics need access to every site; ask for ?site=.")
                )
            site = None
        else:
            site = next((s for s in visible if s is not None and s.code == code), None)
            if site is None:
                raise exceptions.NotFound(_("No such site among yours."))
        snapshot = Snapshot.objects.select_related("site").latest_complete(site)
        if snapshot is None:
            raise exceptions.NotFound(_("No complete analytics snapshot for this scope yet."))
        return Response(self.get_serializer(snapshot).data)


class ReportPermission(permissions.BasePermission):
    """The report archive is for the roles that see analytics (INTERFACES.md section 5)."""

    message = _("Reports are for data managers, PIs and administrators.")

    def has_permission(self, request, view) -> bool:
        return bool(request.user and can(request.user, Action.ANALYTICS))


class ReportFilter(django_filters.FilterSet):
    month = django_filters.DateFilter(
        method="in_month", input_formats=["%Y-%m", "%Y-%m-%d"], label=_("Month")
    )
    site = django_filters.CharFilter(field_name="site__code", label=_("Site code"))
    language = django_filters.ChoiceFilter(choices=settings.LANGUAGES, label=_("Language"))

    def in_month(self, queryset: QuerySet, name: str, value: date) -> QuerySet:
        return queryset.filter(month=value.replace(day=1))


class PdfDownloadNegotiation(BaseContentNegotiation):
    """The download answers with the PDF itself, or refuses in JSON, whatever the Accept header
    asks for (`Accept: application/pdf` would otherwise be a 406: no renderer writes PDFs)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema_view(
    list=extend_schema(
        summary="List the monthly reports of your scopes",
        description=(
            "The archive of monthly PDF reports of the whole registry (administrators) and of "
            "your sites; newest month first, paginated."
        ),
        parameters=[
            OpenApiParameter(
                "month", str, description="A month, as YYYY-MM (or any day in it, YYYY-MM-DD)."
            )
        ],
        responses={
            200: api.ReportSerializer(many=True),
            403: OpenApiResponse(description="Not your role."),
        },
    ),
    retrieve=extend_schema(
        summary="One of the monthly reports",
        responses={
            200: api.ReportSerializer,
            403: OpenApiResponse(description="Not your role."),
            404: OpenApiResponse(description="No such report of your scopes."),
        },
    ),
)
class ReportViewSet(viewsets.ReadOnlyModelViewSet):
    """The monthly PDF reports of the scopes whose sites are all yours, as on the reports page."""

    serializer_class = api.ReportSerializer
    permission_classes = [ReportPermission]
    filterset_class = ReportFilter

    def get_queryset(self) -> QuerySet:
        from analytics.report.services import reports_visible_to  # analytics builds on registry

        return reports_visible_to(self.request.user).order_by(
            "-month", "site__code", "language", "-created_at", "-pk"
        )

    @extend_schema(
        summary="Download one of the monthly reports",
        description="The PDF, as on the reports page; the download is logged (who, when).",
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            403: OpenApiResponse(description="Not your role."),
            404: OpenApiResponse(description="No such report of your scopes."),
        },
    )
    @action(detail=True, content_negotiation_class=PdfDownloadNegotiation)
    def download(self, request, pk=None) -> HttpResponse:
        from analytics.report.services import report_download  # analytics builds on registry

        report = self.get_object()
        pdf = report_download(report, user=request.user)
        return HttpResponse(
            pdf,
            content_type="application/pdf",
            headers={
                "Content-Disposition": content_disposition_header(
                    as_attachment=True, filename=report.download_name
                )
            },
        )
