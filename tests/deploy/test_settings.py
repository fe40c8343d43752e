"""Production settings: `check --deploy` is clean, sessions time out, passwords are strong,
signing in is throttled, pages carry a strict Content-Security-Policy, logs are JSON lines."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from unittest import mock

import pytest
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings

from config.logging import JsonFormatter, RequestIdFilter, scrub_event
from registry.demo import demo_password
from registry.models import User
from tests.deploy.conftest import BASE_DIR, SECRET_KEY


def production(command: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_finds_nothing_to_warn_about():
    result = production(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="registry.hospital.example",
        CACHE_URL="redis://redis:6379/1",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_the_processes_share_no_cache():
    result = production(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="registry.hospital.example",
    )

    assert result.returncode != 0
    assert "registry.W001" in result.stderr and "CACHE_URL" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = production(["check"], DJANGO_ALLOWED_HOSTS="registry.hospital.example")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_seed_demo_refuses_to_run_under_production_settings(tmp_path):
    database = tmp_path / "registry.sqlite3"

    result = production(
        ["seed_demo"],
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="registry.hospital.example",
        DATABASE_URL=f"sqlite:///{database}",
        IMMUNOREG_VAR_DIR=str(tmp_path),
    )

    assert result.returncode != 0
    assert "seed_demo refuses to run under production settings" in result.stderr
    assert not database.exists() or database.stat().st_size == 0


@override_settings(SESSION_COOKIE_AGE=3, SESSION_SAVE_EVERY_REQUEST=True)
def test_a_session_ends_after_its_time_without_a_request(client, nurse):
    client.force_login(nurse)
    assert client.get("/worklist/").status_code == 200

    time.sleep(3.1)

    answer = client.get("/worklist/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


@override_settings(SESSION_COOKIE_AGE=4, IMMUNOREG_SESSION_REFRESH_SECONDS=2)
def test_the_idle_timeout_counts_from_the_last_request_without_a_save_per_request(client, nurse):
    """Production's settings, shortened: the session is saved again at most once per refresh
    period, and that save moves its expiry on."""
    client.force_login(nurse)
    saves = []
    real_save = SessionStore.save

    def counted_save(store, *args, **kwargs):
        saves.append(time.monotonic())
        return real_save(store, *args, **kwargs)

    with mock.patch.object(SessionStore, "save", counted_save):
        assert client.get("/worklist/").status_code == 200  # first request: refreshed
        assert client.get("/worklist/").status_code == 200  # within the period: not saved
        assert len(saves) == 1
        time.sleep(2.2)
        assert client.get("/worklist/").status_code == 200  # saved again, expiry moved on
        assert len(saves) == 2
        time.sleep(2.5)  # 4.7 s after sign-in, 2.5 s after the last save
        assert client.get("/worklist/").status_code == 200
        time.sleep(4.1)  # longer than SESSION_COOKIE_AGE without a request
    answer = client.get("/worklist/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


TRIVIAL = ["aaaaaaaaaaaa", "iloveyou1234", "qwertyqwerty", "!!password2024!!", "abababababab"]


@pytest.mark.parametrize("password", ["short-1", "password123456", "12345678901234", *TRIVIAL])
def test_weak_passwords_are_refused(password, nurse):
    with pytest.raises(ValidationError):
        validate_password(password, nurse)


@pytest.mark.parametrize(
    "password",
    [
        "correct-horse-battery-staple",
        "correct-horse-battery",  # the tests' users (tests/factories.py)
        demo_password("datamanager"),  # the demo's users (seed_demo)
        "Tr0ub4dor&3-again",
    ],
)
def test_a_long_uncommon_password_is_accepted(password, nurse):
    validate_password(password, nurse)


@pytest.mark.parametrize("password", TRIVIAL[:2])
def test_the_admin_refuses_a_trivial_password_for_a_new_user(client, administrator, password):
    client.force_login(administrator)

    answer = client.post(
        "/admin/registry/user/add/",
        {
            "username": "newnurse",
            "usable_password": "true",
            "password1": password,
            "password2": password,
            "role": "nurse",
        },
    )

    assert answer.status_code == 200
    assert answer.context["adminform"].form.errors["password2"]
    assert not User.objects.filter(username="newnurse").exists()


@pytest.mark.parametrize("password", TRIVIAL[:2])
def test_the_admin_refuses_a_trivial_password_when_one_is_changed(
    client, administrator, nurse, password
):
    client.force_login(administrator)
    before = User.objects.get(pk=nurse.pk).password

    answer = client.post(
        f"/admin/registry/user/{nurse.pk}/password/",
        {"usable_password": "true", "password1": password, "password2": password},
    )
    own = client.post(
        "/admin/password_change/",
        {
            "old_password": "correct-horse-battery",
            "new_password1": password,
            "new_password2": password,
        },
    )

    assert answer.status_code == 200 and own.status_code == 200  # the forms again, with errors
    assert answer.context["form"].errors["password2"]
    assert own.context["form"].errors["new_password2"]
    assert User.objects.get(pk=nurse.pk).password == before


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_createsuperuser_refuses_a_trivial_password_until_a_strong_one_is_given(db, monkeypatch):
    typed = iter(["iloveyou1234"] * 2 + ["correct-horse-battery-staple"] * 2)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")  # no bypass
    errors = io.StringIO()

    call_command(
        "createsuperuser",
        username="root",
        email="root@hospital.example",
        stdin=Terminal(),
        stdout=io.StringIO(),
        stderr=errors,
    )

    assert "common password with a few characters added" in errors.getvalue()
    assert User.objects.get(username="root").check_password("correct-horse-battery-staple")


def test_signing_in_is_locked_after_five_wrong_passwords(client, nurse, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = client.post("/accounts/login/", {"username": "nurse", "password": "wrong-one"})
        assert answer.status_code == 200  # the form again, with its error
    last = client.post("/accounts/login/", {"username": "nurse", "password": "wrong-one"})
    assert last.status_code == 429

    locked = client.post(
        "/accounts/login/", {"username": "nurse", "password": "correct-horse-battery"}
    )

    assert locked.status_code == 429
    assert "locked" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_pages_carry_a_content_security_policy_without_inline_script_or_style(client, nurse):
    client.force_login(nurse)

    policy = client.get("/worklist/")["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_every_answer_carries_a_request_id_and_keeps_a_sane_one_it_was_given(client):
    assert len(client.get("/healthz")["X-Request-ID"]) == 32
    given = client.get("/healthz", HTTP_X_REQUEST_ID="proxy-abc123456")
    assert given["X-Request-ID"] == "proxy-abc123456"
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")
    assert forged["X-Request-ID"] != "<script>"


def test_logs_are_json_lines_with_the_request_id(client, nurse):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("immunoreg.request")
    logger.addHandler(handler)
    try:
        client.force_login(nurse)
        answer = client.get("/patients/?study_id=P001")
    finally:
        logger.removeHandler(handler)

    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["request_id"] == answer["X-Request-ID"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/patients/", 200)
    assert line["user_id"] == nurse.pk
    assert "P001" not in json.dumps(line)  # no query string: searches name patients


def test_error_reports_carry_no_request_body_query_user_or_variables():
    event = {
        "request": {
            "method": "POST",
            "url": "https://registry.example/patients/?study_id=P001",
            "data": {"study_id": "P001"},
            "cookies": {"sessionid": "x"},
            "headers": {"Cookie": "sessionid=x"},
        },
        "user": {"id": 3, "username": "nurse"},
        "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"patient": "P001"}}]}}]},
    }

    scrubbed = scrub_event(event)

    assert "P001" not in json.dumps(scrubbed) and "sessionid" not in json.dumps(scrubbed)
    assert scrubbed["request"] == {"method": "POST", "url": "https://registry.example/patients/"}


def test_uploads_are_limited_in_size_and_kind(settings):
    assert settings.IMMUNOREG_MAX_UPLOAD_BYTES <= 50 * 1024 * 1024
    assert set(settings.IMMUNOREG_UPLOAD_EXTENSIONS) == {".csv", ".xlsx"}
    assert settings.FILE_UPLOAD_HANDLERS[0] == "registry.middleware.CheckedUploadHandler"
