"""For scripts/backup.sh and restore.sh: the app's database, media and backup directory as shell
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, MEDIA_ROOT, BACKUP_ROOT), read from
the settings exactly as the app reads them (.env, the environment)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()
from django.conf import settings  # noqa: E402

database = settings.DATABASES["default"]
if database["ENGINE"] != "django.db.backends.postgresql":
    sys.exit(
        "backup and restore need PostgreSQL (DATABASE_URL); the SQLite demo database is the file "
        f"{database['NAME']}"
    )
values = {
    "PGHOST": database["HOST"] or "",
    "PGPORT": str(database["PORT"] or 5432),
    "PGUSER": database["USER"] or "",
    "PGPASSWORD": database["PASSWORD"] or "",
    "PGDATABASE": database["NAME"],
    "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "BACKUP_ROOT": os.environ.get("BACKUP_DIR") or str(Path(settings.VAR_DIR) / "backups"),
}
for name, value in values.items():
    print(f"export {name}={shlex.quote(value)}")
