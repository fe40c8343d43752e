from __future__ import annotations

from django import template

from registry import links
from registry.models import quality

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
