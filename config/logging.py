"""Logs as JSON lines, each with the id of the request (or Celery task) it belongs to.

The request id comes from RequestIdMiddleware (registry/middleware.py); it is kept in a context
variable, so every line logged while the request is handled carries it, whichever module logs.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

NO_REQUEST = "-"
request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)

# The attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "task_id",
}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (and, inside a Celery task, `task_id`) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task_id = _current_task_id()
        return True


def _current_task_id() -> str:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return ""
    task = current_task
    request = getattr(task, "request", None) if task else None
    return getattr(request, "id", None) or ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        if getattr(record, "task_id", ""):
            entry["task_id"] = record.task_id
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(*, json_lines: bool, level: str) -> dict:
    """The LOGGING setting: JSON lines (production) or readable text (the local demo)."""
    text = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "config.logging.RequestIdFilter"}},
        "formatters": {
            "json": {"()": "config.logging.JsonFormatter"},
            "text": {"format": text},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["request_id"],
                "formatter": "json" if json_lines else "text",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # WeasyPrint narrates every step at INFO; matplotlib names each missing fallback font.
            "weasyprint": {"level": "ERROR"},
            "fontTools": {"level": "ERROR"},
            "matplotlib": {"level": "ERROR"},
            "axes": {"level": "WARNING"},  # not its start-up banner on every command
            # One line per request comes from RequestIdMiddleware; Django's own would repeat it.
            "django.server": {"level": "WARNING"},
        },
    }


# --- optional error reporting (SENTRY_DSN) ---------------------------------------------------------

# What an error report may carry about the request: never its body, cookies, query string or
# the user (patients' data travels in bodies and, for searches, query strings).
_REQUEST_KEYS_KEPT = ("method", "url")


def scrub_event(event: dict, hint: dict | None = None) -> dict:
    """Sentry's before_send: keep the error and where it happened, drop anything personal."""
    request = event.get("request")
    if request:
        event["request"] = {key: request[key] for key in _REQUEST_KEYS_KEPT if key in request}
        if "url" in event["request"]:
            event["request"]["url"] = event["request"]["url"].split("?")[0]
    event.pop("user", None)
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    return event


def init_error_reporting(dsn: str, *, environment: str) -> None:
    """Errors of the web app and the workers go to a Sentry-compatible service, without personal
    data: no request bodies, no local variables, no user."""
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        traces_sample_rate=0,
    )
