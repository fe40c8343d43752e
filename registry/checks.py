"""System checks of the deployment (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

LOCAL_MEMORY = "django.core.cache.backends.locmem.LocMemCache"


@register(Tags.caches, deploy=True)
def shared_cache(app_configs, **kwargs) -> list[Warning]:
    """Production shares one cache between its processes (config/settings/base.py, CACHES):
    with each process's own memory, each gunicorn process computes a site's worklist afresh,
    and the worklists warmed after midnight by the worker are not seen by the web processes."""
    if not settings.IMMUNOREG_PRODUCTION or settings.CACHES["default"]["BACKEND"] != LOCAL_MEMORY:
        return []
    return [
        Warning(
            "The cache is each process's own memory: the web processes and the worker do not "
            "share the worklists.",
            hint="Set CACHE_URL to a Redis database of its own, e.g. redis://redis:6379/1.",
            id="registry.W001",
        )
    ]
