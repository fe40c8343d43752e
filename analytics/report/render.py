"""Render the monthly report to PDF with WeasyPrint (A4, running header, page numbers)."""

from __future__ import annotations

import base64
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from weasyprint import HTML


def svg_source(svg: str) -> str:
    """An <img> source for an SVG figure: vector and its text stays text in the PDF."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_html(context: dict[str, Any], *, language: str) -> str:
    with translation.override(language):
        context = {
            **context,
            "figures": {name: svg_source(svg) for name, svg in context["figures"].items()},
            "language": language,
        }
        return render_to_string("analytics/report/monthly.html", context)


def render_pdf(context: dict[str, Any], *, language: str) -> bytes:
    html = render_html(context, language=language)
    return HTML(string=html, base_url=str(settings.BASE_DIR)).write_pdf()
