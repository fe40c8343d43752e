from __future__ import annotations

from typing import Any

from django import template

from analytics.report import formatting
from registry.models import QueryKind

register = template.Library()


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """mapping[key] in a template, or None when either is missing."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(key)


@register.filter
def percent(value: float | None) -> str:
    return formatting.percent(value)


@register.filter
def query_kind(value: str) -> str:
    return str(dict(QueryKind.choices).get(value, value))
