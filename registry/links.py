"""Links to a route for many primary keys, the route reversed once per process.

Django's `reverse` matches the route's pattern again at every call (some 20 µs). A page that
links each of its rows (the patient page's records and their edit links, the patient list, the
worklist) spent a noticeable part of its time there (docs/PERFORMANCE.md). Here a route is
reversed once with a mark in place of each integer argument, and each link is that shape with
the integers put back: the same text as `reverse`. The shape is kept per route, the other
arguments, the script prefix (the path the application is served under) and the URLconf, all
that a reverse depends on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.urls import get_script_prefix, get_urlconf, reverse

# A number no primary key of ours reaches, reversed in the place of each integer argument.
MARK = 987654321987654321


@functools.lru_cache(maxsize=1024)
def _shape(route: str, fixed: tuple[str | None, ...], prefix: str, urlconf: str) -> list[str]:
    """The reversed route cut at each integer argument's place (None in `fixed`)."""
    arguments = [MARK if value is None else value for value in fixed]
    pieces = reverse(route, args=arguments, urlconf=urlconf).split(str(MARK))
    if len(pieces) != fixed.count(None) + 1:  # a mark lost or repeated by the route's pattern
        raise ValueError(f"{route!r} cannot be reversed around its integer arguments")
    return pieces


def link(route: str, *args: int | str) -> str:
    """`reverse(route, args=args)`, the route reversed once for all the integers given."""
    fixed = tuple(None if isinstance(value, int) else str(value) for value in args)
    pieces = _shape(route, fixed, get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF)
    numbers = [str(value) for value in args if isinstance(value, int)]
    text = pieces[0]
    for number, piece in zip(numbers, pieces[1:], strict=True):
        text += number + piece
    return text


def link_maker(route: str, *rest: str) -> Callable[[int], str]:
    """`link(pk)` for the route with an integer primary key first and the fixed arguments `rest`
    after it: `reverse(route, args=[pk, *rest])`."""
    return lambda pk: link(route, pk, *rest)


def asset(path: str) -> str:
    """`{% static path %}`, worked out once per file: the static files' storage looks the
    file's hashed name up in its manifest and quotes it at every call (some 50 µs on the bench's
    host, five times a page). Kept per storage class and STATIC_URL, all that the answer
    depends on while a process runs (the manifest is read once, as the storage starts)."""
    return _asset(path, settings.STORAGES["staticfiles"]["BACKEND"], settings.STATIC_URL)


@functools.lru_cache(maxsize=256)
def _asset(path: str, storage: str, static_url: str) -> str:
    return staticfiles_storage.url(path)
