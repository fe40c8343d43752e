"""Analytics snapshots in the admin: for reading only (SAP.md section 9: they never change)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from analytics import services
from analytics.models import Snapshot
from registry.admin_links import LinksOnlyWhereAllowed
from registry.admin_scope import SiteScopedAdmin
from registry.permissions import Action, can


@admin.register(Snapshot)
class SnapshotAdmin(SiteScopedAdmin, LinksOnlyWhereAllowed, admin.ModelAdmin):
    list_display = ["started_at", "scope", "status", "trigger", "requested_by", "fingerprint"]
    list_filter = ["status", "trigger", ("site", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["site", "requested_by"]
    date_hierarchy = "started_at"
    actions = None
    exclude = ["output"]
    readonly_fields = [
        "site",
        "status",
        "stage",
        "trigger",
        "requested_by",
        "started_at",
        "heartbeat_at",
        "lease_expires_at",
        "finished_at",
        "worker",
        "fingerprint",
        "code_version",
        "parameters",
        "timings",
        "row_counts",
        "failure_reason",
        "error",
        "same_as",
        "output_json",
    ]

    def get_exclude(self, request, obj=None):
        """The technical error may name servers and addresses (the broker's host and port):
        for administrators; the others read why in words (failure_reason)."""
        if request.user.is_administrator:
            return self.exclude
        return [*self.exclude, "error"]

    def get_readonly_fields(self, request, obj=None):
        return [name for name in self.readonly_fields if name not in self.get_exclude(request)]

    @admin.display(description=_("why it failed"))
    def failure_reason(self, snapshot: Snapshot) -> str:
        return snapshot.failure_reason or "–"

    @admin.display(description=_("scope"))
    def scope(self, snapshot: Snapshot) -> str:
        return snapshot.site.code if snapshot.site_id else str(_("whole registry"))

    @admin.display(description=_("output (SAP.md section 10)"))
    def output_json(self, snapshot: Snapshot) -> str:
        if snapshot.output is None:
            return "–"
        return format_html("<pre>{}</pre>", json.dumps(snapshot.output, indent=2))

    def scope_queryset(self, request, queryset):
        """The snapshots of the scopes the user may see."""
        scopes = services.scopes_visible_to(request.user)
        site_ids = [site.pk for site in scopes if site is not None]
        if None in scopes:
            return queryset.filter(site__isnull=True) | queryset.filter(site__in=site_ids)
        return queryset.filter(site__in=site_ids)

    def has_module_permission(self, request) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_view_permission(self, request, obj=None) -> bool:
        return can(request.user, Action.ADMIN_SITE)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
