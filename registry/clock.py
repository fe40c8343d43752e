"""The registry's idea of today: the local date, or IMMUNOREG_TODAY when a test or demo fixes it."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.utils import timezone


def today() -> date:
    if settings.IMMUNOREG_TODAY:
        return date.fromisoformat(str(settings.IMMUNOREG_TODAY))
    return timezone.localdate()
