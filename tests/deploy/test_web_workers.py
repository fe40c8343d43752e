"""gunicorn as docker/web.sh runs it (bench/web_command.py reads the script): the app is loaded
once, in gunicorn's arbiter, before its workers are forked (--preload). Without it, every
worker imported the app itself, the analytics' pandas, SciPy, lifelines and matplotlib with
it: 4-15 s of a core each time --max-requests replaced a worker, while the other workers
waited for that core (docs/PERFORMANCE.md, session 9)."""

from __future__ import annotations

import http.client
import os
import signal
from pathlib import Path

from tests.deploy.conftest import app_env, free_port, run_django, start_web, wait_for


def children(pid: int) -> set[int]:
    return {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }


def mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def healthz(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_workers_are_forks_of_the_app_loaded_once(
    postgres, migrated_template, static_var_dir, tmp_path
):
    database = postgres.create_database("immunoreg_web_workers", template=migrated_template)
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (var_dir / "staticfiles").symlink_to(static_var_dir / "staticfiles")
    env = app_env(
        database_url=postgres.url(database),
        broker_url=f"redis://127.0.0.1:{free_port()}/0",  # none: the health is "degraded", 200
        var_dir=var_dir,
    )
    web, port = start_web(env, tmp_path / "gunicorn.log", workers=2, threads=2)
    arbiter = web.popen.pid
    try:
        # The arbiter holds the app and the analytics' libraries before any request.
        assert "/pandas/" in mapped(arbiter) and "/scipy/" in mapped(arbiter), web.output()
        wait_for(lambda: len(children(arbiter)) == 2, what="two workers")
        first = children(arbiter)
        assert healthz(port) == 200

        # A worker replaced (as after its --max-requests) is a new fork of the arbiter, which
        # answers as the others do.
        replaced = min(first)
        os.kill(replaced, signal.SIGTERM)
        wait_for(
            lambda: replaced not in children(arbiter) and len(children(arbiter)) == 2,
            what="the replacement worker",
        )
        assert all("/pandas/" in mapped(worker) for worker in children(arbiter))
        assert healthz(port) == 200 and healthz(port) == 200
    finally:
        web.stop()


LOADED = """
import gc

from django.db import connections
from django.template import engines
from django.urls import get_resolver

import config.wsgi  # as gunicorn's arbiter loads it under --preload

[cached] = engines["django"].engine.template_loaders  # production: the cached loader
print(sorted(key for key in cached.get_template_cache if key.startswith("registry/")))
print(len(get_resolver().reverse_dict) > 0, [c.connection for c in connections.all()])
print(gc.get_freeze_count() > 100_000)
"""


def test_loading_the_app_compiles_its_pages_and_opens_no_database_connection(tmp_path):
    """What the forked workers inherit: the URLconf, the compiled templates, the loaded objects
    frozen out of the garbage collector (a full collection scans only what came after); and nothing a fork may not share, such as a connection to PostgreSQL."""
    env = app_env(
        database_url="postgres://nobody@127.0.0.1:1/none",  # unreachable: never asked for
        broker_url="redis://127.0.0.1:1/0",
        var_dir=tmp_path,
    )
    compiled, state, frozen = run_django(LOADED, env).strip().splitlines()[-3:]
    assert "registry/patient_detail.html" in compiled and "registry/worklist.html" in compiled
    assert state == "True [None]"  # the URLconf loaded; the database never connected
    assert frozen == "True"  # Django, the app and the analytics' libraries: frozen
