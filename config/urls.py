from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("registry.api.urls")),
    path("analytics/", include("analytics.urls")),
    path("accounts/otp/", include("registry.otp")),
    path("", include("registry.urls")),
]
