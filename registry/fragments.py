"""Parts of a page that are the same for many requests, rendered once per process.

The links to add a record under a treatment are the same under every treatment but for its key;
the header's links are the same for everyone who may follow the same ones. Rendered by Django's
template engine at each request they were about a sixth of the patient page
(docs/PERFORMANCE.md, session 11). Here a fragment is a template rendered once for each context
it is given and each language, script prefix (the path the application is served under) and
URLconf, all its text depends on: it must hold nothing else of the request (no CSRF token, no
user name). A keyed fragment is rendered with a mark in its key's place (registry.links), and
the key put back at each use.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from registry.links import MARK


def fragment(template_name: str, **context) -> SafeString:
    """The template rendered with this context (hashable values only)."""
    if settings.DEBUG:  # a template edited while `runserver` runs is shown as it is now
        return mark_safe(render_to_string(template_name, context))
    return _rendered(
        template_name,
        tuple(sorted(context.items())),
        get_language(),
        get_script_prefix(),
        get_urlconf() or settings.ROOT_URLCONF,
    )


def keyed(template_name: str, pk: int, **context) -> SafeString:
    """The template rendered with `pk` and this context: rendered once with a mark as its `pk`,
    the mark then replaced by the key at each use."""
    return mark_safe(fragment(template_name, pk=MARK, **context).replace(str(MARK), str(int(pk))))


@functools.lru_cache(maxsize=256)
def _rendered(
    template_name: str, context: tuple, language: str | None, prefix: str, urlconf: str
) -> SafeString:
    return mark_safe(render_to_string(template_name, dict(context)))
