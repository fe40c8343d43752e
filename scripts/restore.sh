#!/usr/bin/env bash
# `make restore BACKUP=DIR`: a backup of scripts/backup.sh into the configured database, which
# must be empty (a new database: nothing is overwritten), and its report archive into MEDIA_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}

backup=${1:?usage: scripts/restore.sh BACKUP_DIRECTORY}
test -f "$backup/database.dump" || { echo "no database.dump in $backup" >&2; exit 2; }
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || { echo "$backup is damaged" >&2; exit 2; }

eval "$("$PYTHON" scripts/backup_settings.py)"

tables=$(psql --no-psqlrc --tuples-only --no-align \
  --command "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
if [ "$tables" != "0" ]; then
  echo "the database $PGDATABASE is not empty ($tables tables): restore into a new, empty one" >&2
  exit 1
fi
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$PGDATABASE" \
  "$backup/database.dump"
mkdir -p "$MEDIA_ROOT"
tar --extract --gzip --file="$backup/media.tar.gz" --directory="$MEDIA_ROOT"
echo "restored $backup into the database $PGDATABASE and $MEDIA_ROOT"
