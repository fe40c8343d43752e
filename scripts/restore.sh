#!/usr/bin/env bash
# `make restore BACKUP=DIR`: a backup of scripts/backup.sh into the configured database, which
# must be empty (a new database: nothing is overwritten), and its report archive into MEDIA_ROOT,
# where no file of the backup may exist already unless --overwrite-media is given
# (`make restore BACKUP=DIR OVERWRITE_MEDIA=1`). Everything is checked before anything is written.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}

usage="usage: scripts/restore.sh [--overwrite-media] BACKUP_DIRECTORY"
overwrite_media=no
backup=""
for argument in "$@"; do
  case "$argument" in
    --overwrite-media) overwrite_media=yes ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) backup=$argument ;;
  esac
done
test -n "$backup" || { echo "$usage" >&2; exit 2; }
test -f "$backup/database.dump" || { echo "no database.dump in $backup" >&2; exit 2; }
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || { echo "$backup is damaged" >&2; exit 2; }

eval "$("$PYTHON" scripts/backup_settings.py)"

if [ "$overwrite_media" = no ] && [ -d "$MEDIA_ROOT" ]; then
  taken=0
  first=""
  while IFS= read -r name; do
    if [ -e "$MEDIA_ROOT/$name" ] && [ ! -d "$MEDIA_ROOT/$name" ]; then
      taken=$((taken + 1))
      first=${first:-$name}
    fi
  done < <(tar --list --gzip --file="$backup/media.tar.gz")
  if [ "$taken" -gt 0 ]; then
    echo "$MEDIA_ROOT already holds $taken file(s) of the backup (the first: ${first#./}):" \
      "restore into an empty media folder, or overwrite them with --overwrite-media" \
      "(make restore ... OVERWRITE_MEDIA=1)" >&2
    exit 1
  fi
fi

tables=$(psql --no-psqlrc --tuples-only --no-align \
  --command "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
if [ "$tables" != "0" ]; then
  echo "the database $PGDATABASE is not empty ($tables tables): restore into a new, empty one" >&2
  exit 1
fi
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$PGDATABASE" \
  "$backup/database.dump"
mkdir -p "$MEDIA_ROOT"
if [ "$overwrite_media" = yes ]; then
  tar --extract --gzip --file="$backup/media.tar.gz" --directory="$MEDIA_ROOT"
else
  # A file that appeared since the check above is kept, and the restore fails.
  tar --extract --gzip --keep-old-files --file="$backup/media.tar.gz" --directory="$MEDIA_ROOT"
fi
echo "restored $backup into the database $PGDATABASE and $MEDIA_ROOT"
