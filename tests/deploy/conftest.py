"""The deployment as it runs in a hospital, on this machine: a throwaway PostgreSQL 15 cluster and
Redis server (on free ports, so that tests may stop and restart them without touching the shared
services), the app under config.settings.production served by gunicorn, and real Celery workers.

Nothing here is skipped: a missing program fails the test with what to install.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bench.web_command import web_command

BASE_DIR = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("IMMUNOREG_PG_BIN", "/usr/lib/postgresql/15/bin"))
WAIT_SECONDS = 60
PASSWORD = "correct-horse-battery-staple"
SECRET_KEY = "tests-deploy-" + "k7Qz9x" * 10
TODAY = "2024-10-31"
# The people of every test stack: one per role at AHP, and a nurse at XHC.
PEOPLE = {
    "nurse": ("nurse", "AHP"),
    "datamanager": ("data_manager", "AHP"),
    "pi": ("pi", "AHP"),
    "admin": ("administrator", "AHP"),
    "nurse_xhc": ("nurse", "XHC"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], *, seconds: float = WAIT_SECONDS, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def require_program(path: str | Path, package: str) -> str:
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{path} is needed by the deployment tests: apt-get install {package}")
    return found


# --- a throwaway PostgreSQL cluster ----------------------------------------------------------------


class Postgres:
    """A PostgreSQL 15 cluster in a temporary directory, on a free port, trust authentication.

    initdb refuses to run as root; as root the cluster runs as the `postgres` system user."""

    def __init__(self) -> None:
        require_program(PG_BIN / "initdb", "postgresql-15")
        self.root = Path(tempfile.mkdtemp(prefix="immunoreg-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("as root, the throwaway PostgreSQL runs as the user postgres: none")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            PG_BIN / "initdb",
            *("-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8"),
            "--no-instructions",
        )

    def _run(self, *command, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, *map(str, command)],
            check=check,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def query(self, database: str, sql: str, *params) -> list[tuple]:
        with self.connect(database) as connection:
            return connection.execute(sql, params).fetchall()

    def create_database(self, name: str, *, template: str = "template0") -> str:
        with self.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name


# --- a throwaway Redis --------------------------------------------------------------------------


class RedisServer:
    """redis-server on a fixed free port, nothing on disk; stop and start it again at will."""

    def __init__(self) -> None:
        self.program = require_program("redis-server", "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.program, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, seconds=15, what="redis-server")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


# --- the app in child processes ------------------------------------------------------------------


def app_env(*, database_url: str, broker_url: str, var_dir: Path, **overrides: str) -> dict:
    """The environment of a production deployment (config.settings.production) for a child."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "CELERY_", "DATABASE_", "IMMUNOREG_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        CELERY_VISIBILITY_TIMEOUT="5",
        IMMUNOREG_VAR_DIR=str(var_dir),
        IMMUNOREG_TODAY=TODAY,
        IMMUNOREG_REQUIRE_2FA="0",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        MPLCONFIGDIR=str(var_dir / "matplotlib"),
    )
    env.update(overrides)
    return env


def run_django(code: str, env: dict, *, timeout: float = 120) -> str:
    """Run Django code in a fresh process with this environment; its standard output."""
    script = "import django\ndjango.setup()\n" + code
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"child process failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def manage(*arguments: str, env: dict, timeout: float = 180, check: bool = True):
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(arguments)} failed:\n{result.stderr[-4000:]}")
    return result


PEOPLE_SETUP = f"""
from registry.models import Site, User
sites = {{code: Site.objects.create(code=code, name=f"Hospital {{code}}") for code in ("AHP", "XHC")}}
for username, (role, site) in {PEOPLE!r}.items():
    user = User(username=username, role=role)
    user.set_password({PASSWORD!r})
    user.save()
    user.sites.set([sites[site]])
"""


class Process:
    """A long-running child (gunicorn, a Celery worker) with its output in a log file."""

    def __init__(self, command: list[str], *, env: dict, log: Path) -> None:
        self.log = log
        with log.open("ab") as output:
            self.popen = subprocess.Popen(
                command,
                cwd=BASE_DIR,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def start_web(env: dict, log: Path, *, workers: int = 2, threads: int = 8) -> tuple[Process, int]:
    """gunicorn with docker/web.sh's command line (bench/web_command.py), these many workers and
    threads, on a free port of loopback."""
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("gunicorn is needed by the deployment tests (requirements/production.txt)")
    port = free_port()
    sized = env | {"GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": str(threads)}
    web = Process(web_command(f"127.0.0.1:{port}", sized), env=env, log=log)

    def listening() -> bool:
        if not web.alive():
            pytest.fail(f"gunicorn did not start:\n{web.output()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(listening, what="gunicorn")
    return web, port


def start_worker(env: dict, log: Path, *, name: str, prelude: str = "") -> Process:
    """A real Celery worker (solo pool: the task runs in the process that is killed)."""
    argv = [
        *("celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"),
    ]
    code = f"{prelude}\nimport sys\nfrom celery.__main__ import main\nsys.argv = {argv!r}\nmain()\n"
    worker = Process([sys.executable, "-c", code], env=env, log=log)
    wait_for(
        lambda: " ready." in worker.output() or not worker.alive(),
        what=f"the Celery worker ({log})",
    )
    if not worker.alive():
        pytest.fail(f"the worker did not start:\n{worker.output()[-4000:]}")
    return worker


# --- an HTTP client, as a browser behind the TLS proxy ---------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self):
        return json.loads(self.text)


@dataclass
class Client:
    """Speaks to the app as the hospital's TLS proxy forwards a browser: X-Forwarded-Proto https,
    cookies kept (Secure ones too: the browser saw HTTPS), CSRF token and Origin on every POST."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    token: str = ""

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict | None = None,
        json_body: object = None,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 30,
    ) -> Answer:
        sent = {"Host": f"127.0.0.1:{self.port}", "X-Forwarded-Proto": "https"}
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method not in ("GET", "HEAD") and "csrftoken" in self.cookies:
            sent["X-CSRFToken"] = self.cookies["csrftoken"]
            sent["Origin"] = self.origin
        if self.token:
            sent["Authorization"] = f"Token {self.token}"
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            for cookie in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = cookie.partition("=")
                value = rest.split(";")[0]
                if value in ('""', "") or "max-age=0" in cookie.lower():
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            return Answer(response.status, dict(response.getheaders()), text)
        finally:
            connection.close()

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict | None = None, **kwargs) -> Answer:
        return self.request("POST", path, form=form, **kwargs)

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.get("/accounts/login/")
        answer = self.post("/accounts/login/", {"username": username, "password": password})
        assert answer.status == 302, f"{username} could not sign in: {answer.status}"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    cluster = Postgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def static_var_dir(tmp_path_factory, worker_id) -> Path:
    """IMMUNOREG_VAR_DIR with the static files collected, as the image has them. Collected once
    per run: the test processes (pytest-xdist) take hard links to the same files, each in its
    own var directory."""
    var_dir = tmp_path_factory.mktemp("var")
    run_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the processes' folders are in the run's folder
        run_dir = run_dir.parent
    collected = run_dir / "collected-static"
    with open(run_dir / "collected-static.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not collected.is_dir():
            collecting = Path(tempfile.mkdtemp(prefix="collecting-", dir=run_dir))
            env = app_env(
                database_url="sqlite:///unused", broker_url="memory://", var_dir=collecting
            )
            manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
            (collecting / "staticfiles").rename(collected)
            shutil.rmtree(collecting)
    shutil.copytree(collected, var_dir / "staticfiles", copy_function=os.link)
    return var_dir


@pytest.fixture(scope="session")
def migrated_template(postgres, static_var_dir) -> str:
    """A database migrated with the sites and people of PEOPLE: cloned for each test stack."""
    name = postgres.create_database("immunoreg_template")
    env = app_env(database_url=postgres.url(name), broker_url="memory://", var_dir=static_var_dir)
    manage("migrate", "--noinput", env=env)
    run_django(PEOPLE_SETUP, env)
    return name


@dataclass
class Stack:
    """One deployment: its database, broker, var directory and gunicorn."""

    postgres: Postgres
    redis: RedisServer
    database: str
    var_dir: Path
    logs: Path
    web: Process | None = None
    port: int = 0

    def env(self, **overrides: str) -> dict:
        return app_env(
            database_url=self.postgres.url(self.database),
            broker_url=self.redis.url,
            var_dir=self.var_dir,
            **overrides,
        )

    def query(self, sql: str, *params) -> list[tuple]:
        return self.postgres.query(self.database, sql, *params)

    def client(self, username: str | None = None) -> Client:
        client = Client(self.port)
        if username:
            client.login(username)
        return client

    def django(self, code: str) -> str:
        return run_django(code, self.env())

    def worker(self, name: str, *, prelude: str = "") -> Process:
        return start_worker(self.env(), self.logs / f"{name}.log", name=name, prelude=prelude)


@pytest.fixture(scope="session")
def stack(postgres, migrated_template, static_var_dir, tmp_path_factory) -> Iterator[Stack]:
    """A running deployment shared by the fault and concurrency tests; each test leaves it
    running (services it stopped are started again)."""
    redis = RedisServer()
    redis.start()
    logs = tmp_path_factory.mktemp("stack-logs")
    deployment = Stack(
        postgres=postgres,
        redis=redis,
        database=postgres.create_database("immunoreg_stack", template=migrated_template),
        var_dir=static_var_dir,
        logs=logs,
    )
    deployment.web, deployment.port = start_web(deployment.env(), logs / "gunicorn.log")
    try:
        yield deployment
    finally:
        deployment.web.stop()
        redis.stop()
