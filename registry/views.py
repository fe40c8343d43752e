"""Pages. The research nurses' pages come with their own issue; these are the entry points."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from registry.permissions import Action, can
from registry.selectors import patients_visible_to


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if can(request.user, Action.ADMIN_SITE):
        return redirect("admin:index")
    patients = patients_visible_to(user=request.user).order_by("site__code", "study_id")[:200]
    return render(request, "registry/home.html", {"patients": patients})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: says nothing about patients."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # any failure means "not ok"; the detail goes to the log, not the client
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return JsonResponse(
        {"status": "ok" if status == 200 else "degraded", "database": database}, status=status
    )
