"""Request plumbing: the user's language, no caching of answers, request ids and one log line per
request, a clean 503 while the database is unreachable, and the limits on uploads."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.core.signals import got_request_exception
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext as _

from config.logging import request_id

logger = logging.getLogger("immunoreg.request")


class UserLanguageMiddleware:
    """Each signed-in user sees the registry in the language they chose last."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)


class LoadedUserMiddleware:
    """`request.user` as the user itself once it is loaded, for the view and the page.

    Django's AuthenticationMiddleware and django-otp's OTPMiddleware each put the user behind a
    lazy wrapper, one around the other: every attribute read then went through both (a failed
    lookup and a call each), a fifteenth of the patient page (docs/PERFORMANCE.md, session
    12). The middleware before this one have loaded the user anyway (the two-factor check
    reads it); signed in or not, the object is the same, with the device django-otp set on it.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.__dict__.get("user")
        while isinstance(user, LazyObject):
            if user._wrapped is empty:
                user._setup()
            user = user._wrapped
        if user is not None:
            request.user = user
        return self.get_response(request)


class NoStoreMiddleware:
    """Pages, API answers, downloads and the admin show patient data: no browser or proxy cache
    keeps a copy of any answer the app writes (Cache-Control: no-store), unless its view chose
    its own caching (the analytics figures: aggregates, kept by the signed-in browser only).
    Static files are served before this middleware (WhiteNoise) and stay cacheable."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response


# --- request ids and the request log -------------------------------------------------------------

# An id given by the proxy in front (nginx's $request_id, say) is kept if it looks like one.
REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _signed_in_user_id(request: HttpRequest) -> int | None:
    """The user's id if the request already loaded the user (never a query of its own)."""
    user = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.pk if user.is_authenticated else None


class RequestIdMiddleware:
    """Gives every request an id (logged on every line, returned as X-Request-ID) and logs one
    line when it is answered: method, path (never the query string), status, duration, user id."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _ACCEPTABLE_ID.match(given) else uuid.uuid4().hex
        request.request_id = rid
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = rid
            if not request.path.startswith(f"/{settings.STATIC_URL.lstrip('/')}"):
                logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "user_id": _signed_in_user_id(request),
                    },
                )
            return response
        finally:
            request_id.reset(token)


# --- the database is unreachable: 503, no details ------------------------------------------------

DATABASE_DOWN = (OperationalError, InterfaceError)
AFTER_THE_VIEW = "after_the_view"
RETRY_AFTER_SECONDS = 30


def _caused_by_database(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, DatabaseError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _note_database_failure(sender, request=None, **kwargs) -> None:
    """Django turns an exception raised in any middleware or view into a 500 response; one that
    came from an unreachable database is marked here so that the 500 becomes a 503."""
    error = sys.exc_info()[1]
    if request is None:
        return
    if isinstance(error, DATABASE_DOWN):
        request.database_unavailable = True


got_request_exception.connect(_note_database_failure, dispatch_uid="immunoreg-database-down")


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """Rendered without the database (no user, no session, no context processors)."""
    message = _("The registry is briefly unavailable. Nothing was saved; please try again.")
    if getattr(request, "database_unavailable", None) == AFTER_THE_VIEW:
        message = _(
            "The registry lost its database while finishing your request: your change "
            "may have been saved. Check it before trying again."
        )
    if request.path == "/healthz":  # as registry.health answers, for the monitoring
        response: HttpResponse = JsonResponse(
            {"status": "unavailable", "database": "unavailable"}, status=503
        )
    elif request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(render_to_string("503.html", {"message": message}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """While the database cannot be reached, every request gets a clean 503 (the transaction
    of a write in flight is rolled back by the database); the next request after it is back
    opens a new connection (CONN_HEALTH_CHECKS), so the app recovers without a restart."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.get_response(request)
        except DATABASE_DOWN:
            request.database_unavailable = True
        if getattr(request, "database_unavailable", False):
            logger.error("database unavailable: answered 503", extra={"path": request.path})
            return database_unavailable_response(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, DATABASE_DOWN):
            request.database_unavailable = True
            return database_unavailable_response(request)
        return None


# --- query strings ---------------------------------------------------------------------------------


class QueryStringMiddleware:
    """A query string with a NUL character (which no text column can hold: PostgreSQL refuses
    it in any comparison, a 500 wherever a filter or search uses it) is a 400 that says so."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            message = _("The address contains a character that is not allowed (NUL).")
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=400)
            html = render_to_string("400.html", {"message": message}, request=request)
            return HttpResponse(html, status=400)
        return self.get_response(request)


# --- uploads: how big, and of which kind ---------------------------------------------------------

# What a file must start with, by extension (the only uploads are cohort files).
UPLOAD_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".csv": (),  # text: checked for NUL bytes instead
    ".xlsx": (b"PK\x03\x04",),
}


def upload_refusal(name: str, first_chunk: bytes | None) -> str:
    """Why a file may not be uploaded, or "" if it may (None: its content is not known yet)."""
    extension = PurePosixPath(name.lower()).suffix
    if extension not in settings.IMMUNOREG_UPLOAD_EXTENSIONS:
        return _("Only these kinds of file are accepted: %(kinds)s.") % {
            "kinds": ", ".join(settings.IMMUNOREG_UPLOAD_EXTENSIONS)
        }
    if first_chunk is None:
        return ""
    signatures = UPLOAD_SIGNATURES.get(extension, ())
    if signatures and not first_chunk.startswith(signatures):
        return _("The file's content is not a %(kind)s file.") % {"kind": extension}
    if extension == ".csv" and b"\x00" in first_chunk:
        return _("The file's content is not a %(kind)s file.") % {"kind": extension}
    return ""


class CheckedUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: refuses a file of the wrong kind or over the size limit
    before it is stored anywhere; UploadLimitMiddleware then answers the request."""

    def new_file(self, field_name, file_name, *args, **kwargs) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0
        self.checked = False
        refusal = upload_refusal(file_name or "", None)
        if refusal:
            self._refuse(415, refusal)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if not self.checked:
            self.checked = True
            refusal = upload_refusal(self.file_name or "", raw_data)
            if refusal:
                self._refuse(415, refusal)
        self.received += len(raw_data)
        if self.received > settings.IMMUNOREG_MAX_UPLOAD_BYTES:
            self._refuse(413, too_large_message())
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None

    def _refuse(self, status: int, message: str):
        self.request.upload_refused = (status, message)
        raise SkipFile(message)


def too_large_message() -> str:
    return _("The upload is larger than %(mb)s MB.") % {
        "mb": settings.IMMUNOREG_MAX_UPLOAD_BYTES // (1024 * 1024)
    }


def upload_refused_response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(
        render_to_string("upload_refused.html", {"message": message}, request=request),
        status=status,
    )


class UploadLimitMiddleware:
    """413 for a request body over IMMUNOREG_MAX_UPLOAD_BYTES (by its Content-Length, before
    reading it), and 413/415 for a file that CheckedUploadHandler refused."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.IMMUNOREG_MAX_UPLOAD_BYTES:
            return upload_refused_response(request, 413, too_large_message())
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs):
        if request.method == "POST" and request.content_type == "multipart/form-data":
            request.FILES  # noqa: B018 - parsing the body runs CheckedUploadHandler
            refused = getattr(request, "upload_refused", None)
            if refused:
                return upload_refused_response(request, *refused)
        return None


REFRESHED_AT = "_refreshed_at"


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, with two changes.

    The idle timeout counts from the last request without writing the session after every
    request: with IMMUNOREG_SESSION_REFRESH_SECONDS, a signed-in session is saved again (its
    expiry moved on) when its last save is older than that, so a person is signed out between
    SESSION_COOKIE_AGE minus that and SESSION_COOKIE_AGE after their last request.

    When the database goes away while the session is saved after the view, Django answers 400
    "session interrupted"; this is an outage, and the view's own transaction may have
    committed, so the person is told to check (503)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        _refresh_idle_expiry(request)
        try:
            return super().process_response(request, response)
        except SessionInterrupted as interrupted:
            if not _caused_by_database(interrupted):
                raise
            request.database_unavailable = AFTER_THE_VIEW
            return response


def _refresh_idle_expiry(request: HttpRequest) -> None:
    every = settings.IMMUNOREG_SESSION_REFRESH_SECONDS
    session = getattr(request, "session", None)
    if not every or session is None or not session.accessed or session.is_empty():
        return
    now = time.time()
    if now - session.get(REFRESHED_AT, 0) >= every:
        session[REFRESHED_AT] = now  # marks it modified: saved, with a new expiry
