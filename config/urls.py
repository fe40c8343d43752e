from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon (its
    static URL is looked up per request, as production's hashed names exist after collectstatic)."""

    permanent = True

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("favicon.svg")


urlpatterns = [
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("admin/", admin.site.urls),
    path("api/", include("registry.api.urls")),
    path("analytics/", include("analytics.urls")),
    path("accounts/otp/", include("registry.otp")),
    path("", include("registry.urls")),
]
