"""Analytics pages for PIs, data managers and administrators."""

from django.urls import path

from analytics import views

app_name = "analytics"
urlpatterns = [
    path("", views.index, name="index"),
    path("recompute/", views.recompute, name="recompute"),
    path("computations/<int:pk>/", views.computation, name="computation"),
    # The language is in the URL (a browser keeps each figure under it); the URL without it
    # (older links) serves the page's language.
    path(
        "snapshots/<int:pk>/figures/<str:language>/<slug:name>.svg",
        views.figure,
        name="figure",
    ),
    path("snapshots/<int:pk>/figures/<slug:name>.svg", views.figure, name="figure"),
    path("scopes/<str:scope>/", views.scope_detail, name="scope"),
    path("reports/", views.reports, name="reports"),
    path("reports/render/", views.report_render, name="report-render"),
    path("reports/<int:pk>/download/", views.report_download, name="report-download"),
]
