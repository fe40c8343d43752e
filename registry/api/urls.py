"""REST API under /api/v1/ (INTERFACES.md section 4), and its OpenAPI schema at /api/schema/.

Its URL names live in the `api` namespace ("api:patient-detail", "api:schema"), apart from the
pages' names (registry/urls.py has its own "patient-detail")."""

from csp.constants import NONCE, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.routers import DefaultRouter

from registry.api import views

app_name = "api"

router = DefaultRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("treatments", views.TreatmentViewSet, basename="treatment")
router.register("crs-episodes", views.CrsEpisodeViewSet, basename="crs-episode")
router.register("icans-episodes", views.IcansEpisodeViewSet, basename="icans-episode")
router.register("responses", views.ResponseViewSet, basename="response")
router.register("transplants", views.TransplantViewSet, basename="transplant")
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("relapses", views.RelapseViewSet, basename="relapse")
router.register("deaths", views.DeathViewSet, basename="death")
router.register("labs", views.LabValueViewSet, basename="lab")
router.register("infections", views.InfectionViewSet, basename="infection")
router.register("iec-hs-episodes", views.IecHsEpisodeViewSet, basename="iec-hs-episode")
router.register("ivig-courses", views.IvigCourseViewSet, basename="ivig-course")
router.register(
    "persistence-assessments", views.CarPersistenceViewSet, basename="persistence-assessment"
)
router.register("second-cancers", views.SecondCancerViewSet, basename="second-cancer")
router.register("reports", views.ReportViewSet, basename="report")

# The API docs pages style themselves with inline styles (Swagger UI and ReDoc inject them as
# they render), ReDoc searches in a blob: worker, and ReDoc's page starts it with an inline
# script that carries the request's nonce (templates/drf_spectacular/redoc.html; the Swagger
# split view serves its start-up as a script URL). Only these two pages are relaxed, and only
# so far: every other page keeps script-src and style-src 'self'.
docs_page = csp_update(
    {"style-src": [UNSAFE_INLINE], "script-src": [NONCE], "worker-src": ["blob:"]}
)

urlpatterns = [
    path("v1/analytics/latest/", views.AnalyticsLatestView.as_view(), name="analytics-latest"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "schema/swagger/",
        docs_page(SpectacularSwaggerSplitView.as_view(url_name="api:schema")),
        name="swagger-ui",
    ),
    path(
        "schema/redoc/",
        docs_page(SpectacularRedocView.as_view(url_name="api:schema")),
        name="redoc",
    ),
]
