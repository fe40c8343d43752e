"""config/gunicorn.py (docker/web.sh's --config): a worker that stops normally ends without
Python's finalisation, its database connection closed first; one that stops on a failure exits
as gunicorn makes it, its code kept for the arbiter."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.deploy.conftest import BASE_DIR, app_env

# A worker's last moments as gunicorn's arbiter runs them: its SystemExit goes up through a
# `finally` that calls the worker_exit hook.
WORKER = """
import atexit, sys
import django
django.setup()
from django.db import connection
from config import gunicorn
connection.ensure_connection()
atexit.register(lambda: print("finalised", flush=True))
print("connected", connection.connection.closed, flush=True)
try:
    sys.exit(CODE)
finally:
    gunicorn.worker_exit(None, None)
    print("hook returned", connection.connection is None, flush=True)
"""


def _stop_a_worker(code: int, tmp_path) -> tuple[int, list[str]]:
    env = app_env(
        database_url=os.environ["DATABASE_URL"],
        broker_url="redis://127.0.0.1:1/0",
        var_dir=tmp_path,
    )
    result = subprocess.run(
        [sys.executable, "-c", WORKER.replace("CODE", str(code))],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout.splitlines()


def test_a_worker_stopping_normally_skips_the_finalisation(tmp_path):
    assert _stop_a_worker(0, tmp_path) == (0, ["connected False"])


def test_a_worker_stopping_on_a_failure_exits_with_its_code(tmp_path):
    code, printed = _stop_a_worker(3, tmp_path)  # 3: gunicorn's "the worker could not boot"
    assert (code, printed) == (3, ["connected False", "hook returned False", "finalised"])


def test_the_web_container_runs_gunicorn_with_these_settings():
    from bench.web_command import web_command

    command = web_command("127.0.0.1:1")
    assert command[command.index("--config") + 1] == "python:config.gunicorn"
