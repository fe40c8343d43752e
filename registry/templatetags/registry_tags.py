from __future__ import annotations

from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def visit_label(name: str) -> str:
    """'day100' -> 'Day 100', 'month6' -> 'Month 6', 'year3' -> 'Year 3', in the user's language."""
    for prefix, label in (
        ("day", _("Day %(n)s")),
        ("month", _("Month %(n)s")),
        ("year", _("Year %(n)s")),
    ):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return label % {"n": name[len(prefix) :]}
    return name
