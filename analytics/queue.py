"""Handing work to a Celery worker without importing the tasks.

analytics.tasks calls the services; the services never import the tasks (HOUSE_STYLE). Instead
the task module registers here, at import, how each kind of work is sent, and a service sends
it by name. The app's ready() imports analytics.tasks, so every process has the senders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_senders: dict[str, Callable[..., Any]] = {}


def register(name: str, sender: Callable[..., Any]) -> None:
    _senders[name] = sender


def send(name: str, **kwargs: Any) -> Any:
    """Send work to a worker (or, with eager Celery, do it now)."""
    try:
        sender = _senders[name]
    except KeyError:
        raise LookupError(
            f"no task registered for {name!r} (is analytics.tasks imported?)"
        ) from None
    return sender(**kwargs)
