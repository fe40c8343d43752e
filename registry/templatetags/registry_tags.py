from __future__ import annotations

from django import template

from registry import fragments, links
from registry.models import quality
from registry.permissions import Action, can

register = template.Library()


@register.filter
def visit_label(name: str) -> str:
    """'day100' -> 'Day 100', 'month6' -> 'Month 6', 'year3' -> 'Year 3', in the user's language."""
    return quality.visit_label(name)


@register.simple_tag
def asset(path: str) -> str:
    """`{% asset 'css/immunoreg.css' %}`: what `{% static %}` gives, worked out once per file
    (registry.links.asset), for the files every page links."""
    return links.asset(path)


@register.simple_tag
def link(route: str, *args) -> str:
    """`{% link 'record-edit' kind record.pk %}`: what `{% url %}` gives, the route reversed once
    for every primary key (registry.links), for links repeated down a page."""
    return links.link(route, *args)


# The actions whose pages the header links (templates/_nav_links.html).
NAV_ACTIONS = (
    Action.VIEW,
    Action.ANALYTICS,
    Action.IMPORT,
    Action.EXPORT_DEIDENTIFIED,
    Action.ADMIN_SITE,
)


@register.simple_tag
def nav_links(user) -> str:
    """The header's links for this user (none when signed out): each only for those who may
    follow it, by registry.permissions.can as every view checks; rendered once for all the
    users who may follow the same ones (registry.fragments)."""
    signed_in = user is not None and getattr(user, "is_authenticated", False)
    may = frozenset(a.value for a in NAV_ACTIONS if signed_in and can(user, a))
    return fragments.fragment("_nav_links.html", may=may)


@register.simple_tag
def add_record_links(treatment_pk: int) -> str:
    """The links to add each kind of record under this treatment, rendered once for every
    treatment (registry.fragments.keyed)."""
    return fragments.keyed("registry/_add_record_links.html", treatment_pk)


@register.simple_tag
def language_select() -> str:
    """The header's language menu, the same on every page in a language (registry.fragments)."""
    return fragments.fragment("_language_select.html")
