"""Bodies the API cannot read are a 400 with a message, never a 500.

A clinical record is a flat object of a few kB. `[[[[...]]]]` nested a few thousand deep made
the JSON decoder raise RecursionError (a 500): the parser refuses a body nested deeper than
MAX_DEPTH before decoding it. A body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, as for a form)
was Django's bare "Bad Request" page: the exception handler answers it in JSON, with a message.
"""

from __future__ import annotations

import io
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

MAX_DEPTH = 20
_STRING = re.compile(rb'"(?:\\.|[^"\\])*"')  # brackets inside strings do not nest
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a bare value)."""
    depth = deepest = 0
    for bracket in _STRING.sub(b"", body).translate(None, _NOT_A_BRACKET):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()  # DRF reads request.body: DATA_UPLOAD_MAX_MEMORY_SIZE applies
        if nesting_depth(body) > MAX_DEPTH:
            raise ParseError(
                _("The JSON is nested deeper than %(depth)d levels.") % {"depth": MAX_DEPTH}
            )
        return super().parse(io.BytesIO(body), media_type, parser_context)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's, with Django's refusals of a request body answered as 400s with a message."""
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError(
            _("The request body is larger than %(kb)d kB.")
            % {"kb": settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024}
        )
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = ParseError(_("The request has too many fields or files."))
    return exception_handler(exc, context)
