"""`compute_analytics [--site CODE] [--json FILE]` (INTERFACES.md section 2).

Computes a snapshot now (SAP.md) for the whole registry or one site and writes its output, the
JSON of SAP.md section 10, to FILE (stdout with `--json -`). Exit status 0, or 1 with a message
on stderr when it cannot (unknown site, a computation already running, a failed computation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics import services
from analytics.models import Trigger
from registry.models import Site


class Command(BaseCommand):
    help = (
        "Compute an analytics snapshot now for the whole registry (or --site CODE) and write "
        "its output (SAP.md section 10) as JSON to --json FILE, or to stdout with --json -."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", help="Site code; default: the whole registry.")
        parser.add_argument(
            "--json", dest="json_path", help="Write the output JSON here ('-' for stdout)."
        )

    def handle(self, *args: Any, site: str | None, json_path: str | None, **options: Any) -> None:
        scope = self._site(site)
        try:
            snapshot = services.snapshot_compute(site=scope, trigger=Trigger.COMMAND)
        except services.ComputationRunning as running:
            raise CommandError(str(running)) from running
        except Exception as error:
            raise CommandError(
                f"The computation failed and was recorded as failed "
                f"(the latest complete snapshot stays in use): {type(error).__name__}: {error}"
            ) from error
        text = json.dumps(snapshot.output, indent=2, ensure_ascii=False, allow_nan=False)
        if json_path == "-":
            self.stdout.write(text)
        elif json_path:
            self._write(Path(json_path), text)
        summary = (
            f"Snapshot {snapshot.pk} of {scope.code if scope else 'the whole registry'}: "
            f"{snapshot.row_counts.get('analysis_set', 0)} patients, {snapshot.fingerprint}, "
            f"frames {snapshot.timings.get('frames_s')} s, statistics "
            f"{snapshot.timings.get('stats_s')} s."
        )
        # With the JSON on stdout, everything else goes to stderr (unstyled: it is no error).
        if json_path == "-":
            self.stderr.write(summary, style_func=lambda text: text)
        else:
            self.stdout.write(summary)

    def _site(self, code: str | None) -> Site | None:
        if code is None:
            return None
        site = Site.objects.filter(code=code).first()
        if site is None:
            known = ", ".join(Site.objects.order_by("code").values_list("code", flat=True))
            raise CommandError(f"Unknown site {code!r}; known sites: {known or 'none'}.")
        return site

    def _write(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            raise CommandError(f"Cannot write {path}: {error.strerror}") from error
