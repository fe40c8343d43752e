"""The pages' floor (issue #15): the cheapest signed-in page Django can serve, on the same
gunicorn with the same middleware, so that each page's latency is read as a multiple of it.

`config.settings.bench` (production settings, this URL added) is what `make bench` serves; the
registry's own URLs know nothing of it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_required
def floor(request: HttpRequest) -> HttpResponse:
    """The session and its user loaded (by login_required), no other query, no template."""
    return HttpResponse(f"signed in as {request.user.username}", content_type="text/plain")


urlpatterns = [path("bench/floor/", floor, name="bench-floor"), path("", include("config.urls"))]
