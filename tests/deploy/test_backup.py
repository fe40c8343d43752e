"""`make backup` and `make restore`: a backup restored into an empty database gives the same
analytics, and the report archive comes back byte for byte."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import BASE_DIR, app_env, manage, run_django

SEED = """
from django.core.management import call_command
call_command("seed_demo", patients=30, verbosity=0)
"""


def make(target: str, env: dict, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", target, *arguments],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def analytics_json(env: dict, path: Path) -> dict:
    manage("compute_analytics", "--json", str(path), env=env)
    output = json.loads(path.read_text())
    output.pop("generated_at")
    return output


def test_a_backup_restored_into_an_empty_database_gives_the_same_analytics(
    postgres, migrated_template, tmp_path
):
    source = postgres.create_database("immunoreg_backup_source", template=migrated_template)
    source_var = tmp_path / "source-var"
    source_env = app_env(
        database_url=postgres.url(source), broker_url="memory://", var_dir=source_var
    ) | {"CELERY_TASK_ALWAYS_EAGER": "1"}
    run_django(SEED, source_env)
    before = analytics_json(source_env, tmp_path / "before.json")
    archive = source_var / "media" / "reports" / "2024" / "10" / "AHP-2024-10-en.pdf"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"%PDF-1.4 the October report")

    backup = make("backup", source_env)
    assert backup.returncode == 0, backup.stderr
    directory = Path(backup.stdout.strip().splitlines()[-1])
    assert directory.parent == source_var / "backups"
    assert {p.name for p in directory.iterdir()} == {"database.dump", "media.tar.gz", "SHA256SUMS"}

    target = postgres.create_database("immunoreg_backup_target")  # empty: template0
    target_var = tmp_path / "target-var"
    target_env = app_env(
        database_url=postgres.url(target), broker_url="memory://", var_dir=target_var
    ) | {"CELERY_TASK_ALWAYS_EAGER": "1"}
    stale = target_var / "media" / archive.relative_to(source_var / "media")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"%PDF-1.4 a stale copy")  # replaced only when asked to
    restore = make("restore", target_env, f"BACKUP={directory}", "OVERWRITE_MEDIA=1")
    assert restore.returncode == 0, restore.stderr

    latest = "from analytics.models import Snapshot\nprint(Snapshot.objects.latest_complete().pk)"
    assert run_django(latest, target_env) == run_django(latest, source_env)
    restored = target_var / "media" / archive.relative_to(source_var / "media")
    assert restored.read_bytes() == archive.read_bytes()
    after = analytics_json(target_env, tmp_path / "after.json")
    assert after == before  # the data fingerprint and code version included

    again = make("restore", target_env, f"BACKUP={directory}", "OVERWRITE_MEDIA=1")
    assert again.returncode != 0 and "not empty" in again.stderr  # never over existing data


def test_a_restore_never_overwrites_a_file_already_in_the_media_folder_unless_asked(tmp_path):
    backup, archived = tmp_path / "backup", tmp_path / "archived"
    (archived / "reports" / "2024" / "10").mkdir(parents=True)
    (archived / "reports" / "2024" / "10" / "AHP.pdf").write_bytes(b"%PDF-1.4 the backup's")
    backup.mkdir()
    (backup / "database.dump").write_bytes(b"PGDMP never read")
    subprocess.run(
        ["tar", "--create", "--gzip", "--file", backup / "media.tar.gz", "-C", archived, "."],
        check=True,
    )
    sums = subprocess.run(
        ["sha256sum", "database.dump", "media.tar.gz"], cwd=backup, capture_output=True, text=True
    )
    (backup / "SHA256SUMS").write_text(sums.stdout)
    here = tmp_path / "var" / "media" / "reports" / "2024" / "10" / "AHP.pdf"
    here.parent.mkdir(parents=True)
    here.write_bytes(b"%PDF-1.4 the server's own")
    env = app_env(  # no database answers there: the refusal comes before any of it
        database_url="postgres://postgres@127.0.0.1:1/never_reached",
        broker_url="memory://",
        var_dir=tmp_path / "var",
    )

    result = make("restore", env, f"BACKUP={backup}")

    assert result.returncode != 0, result.stderr
    assert "reports/2024/10/AHP.pdf" in result.stderr and "OVERWRITE_MEDIA=1" in result.stderr
    assert here.read_bytes() == b"%PDF-1.4 the server's own"


def test_a_damaged_backup_is_refused(postgres, tmp_path):
    directory = tmp_path / "backup"
    directory.mkdir()
    (directory / "database.dump").write_bytes(b"PGDMP damaged")
    (directory / "media.tar.gz").write_bytes(b"")
    (directory / "SHA256SUMS").write_text(f"{'0' * 64}  database.dump\n{'0' * 64}  media.tar.gz\n")
    env = app_env(
        database_url=postgres.url("postgres"), broker_url="memory://", var_dir=tmp_path / "var"
    )

    result = make("restore", env, f"BACKUP={directory}")

    assert result.returncode != 0 and "damaged" in result.stderr


@pytest.mark.parametrize("target", ["backup", "restore"])
def test_backup_and_restore_refuse_the_sqlite_demo_database(tmp_path, target):
    env = app_env(
        database_url=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        broker_url="memory://",
        var_dir=tmp_path / "var",
    )
    if target == "restore":
        directory = tmp_path / "backup"
        directory.mkdir()
        (directory / "database.dump").write_bytes(b"x")
        (directory / "SHA256SUMS").write_text(
            subprocess.run(
                ["sha256sum", "database.dump"], cwd=directory, capture_output=True, text=True
            ).stdout
        )
        result = make("restore", env, f"BACKUP={directory}")
    else:
        result = make("backup", env)

    assert result.returncode != 0 and "need PostgreSQL" in result.stderr
