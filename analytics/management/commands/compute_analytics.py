"""`compute_analytics [--site CODE | --every-scope] [--json FILE]` (INTERFACES.md section 2).

Computes a snapshot now (SAP.md) for the whole registry or one site and writes its output, the
JSON of SAP.md section 10, to FILE (stdout with `--json -`). With --every-scope: the whole
registry and every site, as the nightly run does (a scope whose data did not change keeps its
snapshot), so that every scope a user may see is computed (`make demo`); the JSON is the whole
registry's. The figures of each snapshot are drawn with it. Exit status 0, or 1 with a message
on stderr when it cannot (unknown site, a computation already running, a failed computation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics import services
from analytics.models import Snapshot, Status, Trigger
from analytics.snapshot_figures import figures_draw
from registry.files import write_whole
from registry.models import Site


class Command(BaseCommand):
    help = (
        "Compute an analytics snapshot now for the whole registry (or --site CODE) and write "
        "its output (SAP.md section 10) as JSON to --json FILE, or to stdout with --json -."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--site", help="Site code; default: the whole registry.")
        scope.add_argument(
            "--every-scope",
            action="store_true",
            help="The whole registry and every site (as the nightly run; unchanged ones kept).",
        )
        parser.add_argument(
            "--json", dest="json_path", help="Write the output JSON here ('-' for stdout)."
        )

    def handle(
        self,
        *args: Any,
        site: str | None,
        every_scope: bool,
        json_path: str | None,
        **options: Any,
    ) -> None:
        scope = self._site(site)
        try:
            if every_scope:
                snapshots = services.snapshots_refresh_all(trigger=Trigger.COMMAND)
                for other in snapshots[1:]:
                    self._summary(other, json_path)
                snapshot = Snapshot.objects.latest_complete(None) or snapshots[0]
            else:
                snapshot = services.snapshot_compute(site=scope, trigger=Trigger.COMMAND)
                figures_draw(snapshot)
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
        self._summary(snapshot, json_path)

    def _summary(self, snapshot: Snapshot, json_path: str | None) -> None:
        scope = snapshot.site.code if snapshot.site_id else "the whole registry"
        if snapshot.status == Status.SKIPPED:
            summary = f"Snapshot {snapshot.pk} of {scope}: data unchanged, snapshot kept."
        else:
            summary = (
                f"Snapshot {snapshot.pk} of {scope}: "
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
            write_whole(path, text + "\n")
        except OSError as error:
            raise CommandError(f"Cannot write {path}: {error.strerror}") from error
