"""No link in the admin that its reader may not follow.

Django draws a read-only foreign key (every field of a page its reader may only view) as a link
to the related record's admin page, without asking whether the reader may see that page; and
simple-history links the author of each version to the user admin. A data manager sees the
site of a snapshot and the author of a change, but may open neither the site nor the user
admin: those links answered 403. Here such a field is shown as its text, and history pages
link authors for those who may open the user admin only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.contrib import admin
from django.db.models import ForeignKey, Model


@cache
def related_as_text(model: type[Model], name: str) -> Callable[[Model], str]:
    """A read-only admin field showing the related record `name` of a `model` as plain text."""
    field = model._meta.get_field(name)

    @admin.display(description=field.verbose_name)
    def shown(record: Model) -> str:
        related = getattr(record, name)
        return "–" if related is None else str(related)

    shown.__name__ = f"{name}_as_text"
    return shown


class LinksOnlyWhereAllowed:
    """Mixed into a ModelAdmin: each foreign key shown read-only to a reader who may not view
    the related model's admin is shown as text instead of a link."""

    def _unlinkable(self, request) -> set[str]:
        names = set()
        for field in self.model._meta.get_fields():
            if not isinstance(field, ForeignKey):
                continue
            related_admin = self.admin_site._registry.get(field.related_model)
            if related_admin is None or not related_admin.has_view_permission(request):
                names.add(field.name)
        return names

    def _as_text(self, request, names, *, readonly: bool) -> list:
        hidden = self._unlinkable(request)
        return [
            related_as_text(self.model, name)
            if isinstance(name, str) and name in hidden and readonly
            else name
            for name in names
        ]

    def _editable(self, request, obj) -> bool:
        if obj is None:
            return self.has_add_permission(request)
        return self.has_change_permission(request, obj)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self._editable(request, obj):
            readonly = set(super().get_readonly_fields(request, obj))
            hidden = self._unlinkable(request) & readonly
            return [
                related_as_text(self.model, name) if name in hidden else name for name in fields
            ]
        return self._as_text(request, fields, readonly=True)

    def get_readonly_fields(self, request, obj=None):
        return self._as_text(request, super().get_readonly_fields(request, obj), readonly=True)

    def history_view(self, request, object_id, extra_context=None):
        user_admin = self.admin_site._registry.get(request.user.__class__)
        if user_admin is None or not user_admin.has_view_permission(request):
            # simple-history links each author through this URL name; none, no link.
            extra_context = {**(extra_context or {}), "admin_user_view": ""}
        return super().history_view(request, object_id, extra_context)
