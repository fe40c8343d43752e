"""What can be checked of the Docker deployment without a Docker engine: the Dockerfile, the
compose file (also checked by `make docker-check` with Compose itself), the start scripts,
and that .env.example documents every variable the app, the containers and the scripts read."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import BASE_DIR

DOCKER = BASE_DIR / "docker"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0].upper(), line.partition(" ")[2])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_is_slim_python_3_11_and_runs_as_a_non_root_user():
    steps = instructions()
    bases = [argument for name, argument in steps if name == "FROM"]
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = [argument for name, argument in steps if name == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    final = steps[max(i for i, (name, _) in enumerate(steps) if name == "FROM") :]
    runs = " ".join(argument for name, argument in final if name == "RUN")
    for package in ("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-wqy-microhei"):
        assert package in runs
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    everything = " ".join(argument for _, argument in steps)
    assert "collectstatic" in everything and "compilemessages" in everything
    assert "HEALTHCHECK" in dict(final) and "ADD" not in dict(steps)
    assert dict(final)["CMD"].startswith("[")  # exec form: signals reach the process


@pytest.mark.parametrize("script", ["web.sh", "worker.sh", "beat.sh"])
def test_each_start_script_is_one_exec_line(script):
    path = DOCKER / script
    commands = [
        line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert len(commands) == 1 and commands[0].startswith("exec ")
    assert path.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_the_five_services_with_health_checks_and_named_volumes():
    services = compose()["services"]
    assert {"db", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("db", "redis", "web", "worker", "beat"):
        assert "healthcheck" in services[name], name
        assert services[name].get("restart") == "unless-stopped" or name != "db"
    volumes = set(compose()["volumes"])
    assert {"pgdata", "media"} <= volumes
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert any(v.startswith("media:") for v in services["web"]["volumes"])
    for name in ("web", "worker", "beat", "migrate"):
        assert services[name]["env_file"], name
        assert services[name]["depends_on"]["migrate" if name != "migrate" else "db"]


def test_the_compose_file_is_valid_for_compose_itself():
    program = shutil.which("docker-compose")
    if program is None:
        pytest.fail("docker-compose is needed (apt-get install docker-compose); see .ci/run")
    result = subprocess.run(
        [program, "--env-file", ".env.example", "-f", "docker/compose.yaml", "config", "-q"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "IMMUNOREG_ENV_FILE": "../.env.example"}
        | {"POSTGRES_PASSWORD": "check-only"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def variables_read() -> set[str]:
    """Every environment variable the settings, the containers and the scripts read."""
    found: set[str] = set()
    for path in (BASE_DIR / "config").rglob("*.py"):
        found |= set(re.findall(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    for path in [*DOCKER.glob("*.sh"), *(BASE_DIR / "scripts").glob("*"), DOCKER / "compose.yaml"]:
        found |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", path.read_text()))
    found |= set(
        re.findall(
            r"environ.get\(\"([A-Z][A-Z0-9_]+)\"", Path(DOCKER / "healthcheck.py").read_text()
        )
    )
    return found - {"PYTHON", "PATH", "HOSTNAME"}


def test_env_example_documents_every_variable():
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M)
    )

    missing = variables_read() - documented
    assert not missing, f"not in .env.example: {sorted(missing)}"
    assert len(variables_read()) > 25


def test_the_shell_scripts_pass_shellcheck():
    program = shutil.which("shellcheck")
    if program is None:
        pytest.fail("shellcheck is needed (apt-get install shellcheck); see .ci/run")
    scripts = [*DOCKER.glob("*.sh"), *(BASE_DIR / "scripts").glob("*.sh")]
    result = subprocess.run([program, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_document_the_deployment_files_point_to_exists():
    pointers = [
        ".env.example",
        "Makefile",
        "README.md",
        *(str(p) for p in DOCKER.iterdir() if p.is_file()),
    ]
    cited = {
        (pointer, document)
        for pointer in pointers
        for document in re.findall(r"\bdocs/[\w./-]+\.md\b", (BASE_DIR / pointer).read_text())
    }
    assert cited  # README.md cites docs/DOMAIN_DECISIONS.md and docs/PERFORMANCE.md
    missing = sorted((pointer, doc) for pointer, doc in cited if not (BASE_DIR / doc).exists())
    assert missing == []
