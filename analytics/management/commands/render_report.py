"""`render_report [--month YYYY-MM] [--site CODE] [--lang en/zh-hans] --out FILE.pdf`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import translation

from analytics.report.context import Month
from analytics.report.services import LANGUAGES, NoSnapshot, report_pdf
from registry.clock import today
from registry.files import write_whole
from registry.models import Site


class Command(BaseCommand):
    help = "Render the monthly PDF summary from the latest analytics snapshot of a scope."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", help="YYYY-MM; default: the current month.")
        parser.add_argument("--site", help="Site code; default: the whole registry.")
        parser.add_argument("--lang", default="en", choices=LANGUAGES)
        parser.add_argument("--out", required=True, help="Where to write the PDF.")

    def handle(
        self, *args: Any, month: str | None, site: str | None, lang: str, out: str, **options: Any
    ) -> None:
        try:
            period = Month.parse(month) if month else Month.containing(today())
        except ValueError as error:
            raise CommandError(f"--month must be YYYY-MM, not {month!r}") from error
        scope = None
        if site is not None:
            scope = Site.objects.filter(code=site).first()
            if scope is None:
                raise CommandError(f"Unknown site {site!r}.")
        try:
            with translation.override("en"):  # the command speaks English
                pdf, snapshot = report_pdf(site=scope, month=period, language=lang)
        except NoSnapshot as missing:
            option = f" --site {scope.code}" if scope else ""
            raise CommandError(
                f"{missing} Compute them first: manage.py compute_analytics{option}"
            ) from missing
        path = Path(out)
        try:
            write_whole(path, pdf)
        except OSError as error:
            raise CommandError(f"Cannot write {path}: {error.strerror}") from error
        self.stdout.write(
            f"Wrote {path} ({len(pdf) // 1024} KiB) for {period} from snapshot "
            f"{snapshot.pk} ({snapshot.fingerprint[:19]})."
        )
