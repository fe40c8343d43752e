"""Container health checks (docker/compose.yaml): `python docker/healthcheck.py web|worker|beat`
exits 0 when that container is healthy, 1 when it is not.

- web: /healthz answers 200 (the database is reachable; registry/health.py).
- worker: the worker of this container answers a Celery ping.
- beat: the every-minute outbox dispatch was sent recently, so beat is alive and scheduling.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from datetime import timedelta

BEAT_SILENT_LIMIT = timedelta(minutes=10)  # django-celery-beat writes last runs every few minutes


def web() -> bool:
    # A host name the app accepts (a leading dot allows subdomains; "*" allows any).
    first = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",")[0].strip()
    host = first.lstrip(".").replace("*", "localhost") or "localhost"
    request = urllib.request.Request("http://127.0.0.1:8000/healthz", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _django() -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    import django

    django.setup()


def worker() -> bool:
    _django()
    from config.celery import app

    replies = app.control.ping(destination=[f"worker@{socket.gethostname()}"], timeout=5)
    return bool(replies)


def beat() -> bool:
    _django()
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(
        task="registry.tasks.dispatch_outbox",
        last_run_at__gte=timezone.now() - BEAT_SILENT_LIMIT,
    ).exists()


if __name__ == "__main__":
    checks = {"web": web, "worker": worker, "beat": beat}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(checks)}")
    sys.exit(0 if checks[sys.argv[1]]() else 1)
