from django.contrib.auth import views as auth_views
from django.urls import path

from registry import exchange_views, lab_views, views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("", views.home, name="home"),
    path("worklist/", views.worklist, name="worklist"),
    path("language/", views.set_language, name="set-language"),
    path("patients/", views.patients, name="patients"),
    path("patients/new/", views.record_new, name="patient-new"),
    path("patients/<int:pk>/", views.patient_detail, name="patient-detail"),
    path("records/<int:parent_pk>/<slug:kind_name>/new/", views.record_new, name="record-new"),
    path("records/<slug:kind_name>/<int:pk>/", views.record_edit, name="record-edit"),
    path("treatments/<int:pk>/labs/", lab_views.treatment_labs, name="treatment-labs"),
    path("grade/crs/", views.crs_grade, name="crs-grade"),
    path("grade/icans/", views.icans_grade, name="icans-grade"),
    path("export/", exchange_views.export_page, name="export"),
    path("export/codebook.csv", exchange_views.export_codebook, name="export-codebook"),
]
