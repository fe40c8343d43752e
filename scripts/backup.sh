#!/usr/bin/env bash
# `make backup`: the database (pg_dump, custom format) and the report archive (MEDIA_ROOT) into
# $BACKUP_DIR/<UTC timestamp>/, with a checksum of each file. Prints the backup's directory.
# The database and media come from the app's own settings (.env, the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}

# DATABASE_URL's parts as PG* variables, MEDIA_ROOT and the backup directory, from the settings.
eval "$("$PYTHON" scripts/backup_settings.py)"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
target="$BACKUP_ROOT/$stamp"
mkdir -p "$target"
pg_dump --format=custom --no-owner --no-privileges --file="$target/database.dump"
tar --create --gzip --file="$target/media.tar.gz" --directory="$MEDIA_ROOT" .
(cd "$target" && sha256sum database.dump media.tar.gz > SHA256SUMS)
echo "$target"
