"""The permission matrix in templates: a page shows a link only to someone who may follow it.

    {% load access %}
    {% if user|can:"export_deidentified" %}<a href="{% url 'export' %}">...</a>{% endif %}
    {% if user|at:patient.site_id|can:"edit" %}<a href="...">Edit</a>{% endif %}

The action is the value of a registry.permissions.Action; the answer is that of
registry.permissions.can, the same function every view checks, so a link and the page behind it
cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template

from registry.permissions import Action
from registry.permissions import can as user_can

register = template.Library()


@dataclass(frozen=True)
class UserAtSite:
    """A user asking about one site (`user|at:site_id`)."""

    user: Any
    site_id: int | None


@register.filter
def at(user: Any, site_id: int | None) -> UserAtSite:
    return UserAtSite(user, site_id)


@register.filter(name="can")
def can(subject: Any, action: str) -> bool:
    """May the user (or the user at a site, see `at`) do this action? An unknown action name is
    a mistake in the template and fails loudly rather than hiding a link."""
    if isinstance(subject, UserAtSite):
        return user_can(subject.user, Action(action), subject.site_id)
    if subject is None or not hasattr(subject, "is_authenticated"):
        return False
    return user_can(subject, Action(action))
