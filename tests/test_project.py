"""The project itself: migrations complete, production settings sound, CI on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_every_model_change_has_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_production_settings_pass_the_deployment_checklist():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "ci-" + "x7Gq2pLm9Rt4Vb8Nc1Zw5Ys3Hk6Jd0Fa" * 2,
        "DJANGO_ALLOWED_HOSTS": "registry.example.org",
        "CACHE_URL": "redis://127.0.0.1:6379/1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set only while the browser tests run
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_ALLOWED_HOSTS": "registry.example.org",
    }
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_ci_runs_on_postgresql():
    """CI sets DATABASE_URL; without it, `make test` runs on SQLite (INTERFACES.md section 1)."""
    expected = (
        "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    )
    assert connection.vendor == expected
    if os.environ.get("CI"):
        assert connection.vendor == "postgresql"


def test_the_suite_writes_its_files_into_a_folder_of_this_run_not_into_var(
    tmp_path_factory,
):
    """A media folder kept from an earlier run made the PI's day fail: the archive refused this
    run's report 1, whose name the earlier run had taken."""
    from django.conf import settings

    media = Path(settings.MEDIA_ROOT).resolve()
    assert media.is_relative_to(tmp_path_factory.getbasetemp().resolve())
    assert not media.is_relative_to(ROOT)
