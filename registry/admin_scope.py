"""One site scoping for every page of the admin, as a class every registered ModelAdmin has.

Every page reads its rows through `get_queryset`, scoped here: a model of registry.selectors'
SITE_PATH to the user's sites; a model an admin scopes its own way (logs to their author,
snapshots to their scope) by overriding `scope_queryset`; any other model to administrators
alone. So another site's record is a 404 on its change, delete, history and past-version pages, as if it
did not exist (Django's admin would redirect to its index with "doesn't exist", and
simple-history's pages would find it in its history whatever the queryset).

The history is the audit trail: it is read, never written. A past version is shown, and a POST
to it (simple-history's "revert") is refused for every model, whatever the user.

A list's query string with a value its filter cannot use is a 400 that says which, never a 500
nor Django's redirect to "?e=1" ("something's wrong with your database installation").

`scope_every_admin` mixes the class into the admins registered by other apps (schedules,
sign-in records, tokens), called once every app's admin module is loaded (RegistryConfig).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.exceptions import (
    DisallowedModelAdminLookup,
    DisallowedModelAdminToField,
)
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from registry.selectors import SITE_PATH, scope_to_user


class BadListQuery(Exception):
    """A list's query string names a filter value, page or lookup that cannot be used."""


class SiteScopedAdmin:
    """Mixed in first into every ModelAdmin of the admin site (see the module's docstring)."""

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """The rows of `queryset` the user may see in the admin."""
        if queryset.model in SITE_PATH:
            return scope_to_user(queryset, user=request.user)
        user = request.user
        return queryset if user.is_authenticated and user.is_administrator else queryset.none()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope_queryset(request, super().get_queryset(request))

    # --- a record the user may not see does not exist ---------------------------------------
    def _get_obj_does_not_exist_redirect(self, request, opts, object_id) -> HttpResponse:
        raise Http404(_("No such record."))

    def _require_visible(self, request: HttpRequest, object_id: str) -> None:
        """The record must be in the scoped queryset. A deleted record's history (only in the
        history tables) is for administrators alone: its site can no longer be checked."""
        try:
            visible = self.get_queryset(request).filter(pk=unquote(object_id)).exists()
        except (ValueError, ValidationError) as error:  # not a key of this model at all
            raise Http404(_("No such record.")) from error
        if not visible and not (request.user.is_authenticated and request.user.is_administrator):
            raise Http404(_("No such record."))

    def require_found(self, request: HttpRequest, object_id: str) -> None:
        """A 404 unless the record is in the user's scope: before anything else is checked (a
        reason asked for, a permission), by any view of an admin that overrides one."""
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404(_("No such record."))

    def delete_view(self, request, object_id, extra_context=None):
        self.require_found(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        """A past version, for reading: a change is made on the record's own page."""
        self._require_visible(request, object_id)
        if request.method not in ("GET", "HEAD"):
            return TemplateResponse(
                request,
                "admin/refused.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("The history is read-only"),
                    "opts": self.model._meta,
                    "message": _(
                        "Past versions are read-only: they cannot be restored or saved again. "
                        "Edit the record itself instead."
                    ),
                },
                status=403,
            )
        return super().history_form_view(request, object_id, version_id, extra_context)

    # --- a bad query string is a 400 that says so ----------------------------------------------
    def get_changelist_instance(self, request: HttpRequest):
        try:
            return super().get_changelist_instance(request)
        except (IncorrectLookupParameters, ValueError, ValidationError, OverflowError) as error:
            raise BadListQuery(str(error)) from error

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except (BadListQuery, DisallowedModelAdminLookup, DisallowedModelAdminToField):
            return TemplateResponse(
                request,
                "admin/refused.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("This list's filter is not valid"),
                    "opts": self.model._meta,
                    "message": _(
                        "A filter, search, ordering or page in the address is not valid for "
                        "this list. Open the list again and choose from its filters."
                    ),
                    "list_url": request.path,
                },
                status=400,
            )


def scope_every_admin(site: admin.AdminSite) -> None:
    """Every admin registered on `site` without SiteScopedAdmin gets it, first in its bases."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, SiteScopedAdmin):
            continue
        base = type(model_admin)
        scoped = type(base.__name__, (SiteScopedAdmin, base), {"__module__": base.__module__})
        site.unregister(model)
        site.register(model, scoped)
