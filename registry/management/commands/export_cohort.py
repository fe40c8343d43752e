"""`export_cohort FILE [--format csv/xlsx/sav/dta] [--deidentify]` (INTERFACES.md section 2).

Writes the analysis set in the flat format of section 3 (re-importable), its laboratory file
beside it (`FILE stem-labs.csv`, `-labs.sav` or `-labs.dta`; an .xlsx has a sheet "labs") and its
codebook (`FILE_codebook.csv`); .sav and .dta files carry the labels inside too. Logged as an
export.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import cohort_file
from registry.management.commands.import_cohort import command_user

DEFAULT_USER = "export"


class Command(BaseCommand):
    help = (
        "Export the analysis set (each patient's first index treatment) as CSV, .xlsx, SPSS .sav "
        "or Stata .dta, with its laboratory file (<FILE stem>-labs.csv/.sav/.dta, or the sheet "
        "'labs' of an .xlsx) and a codebook; --deidentify replaces study IDs by random codes and "
        "dates by days from day 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The file to write.")
        parser.add_argument(
            "--format",
            dest="fmt",
            choices=cohort_file.EXPORT_FORMATS,
            default=None,
            help="csv (default), xlsx, sav or dta; by default taken from the file's extension.",
        )
        parser.add_argument(
            "--deidentify",
            action="store_true",
            help="Random codes for study IDs, days from day 0 for dates, age for year of birth.",
        )
        parser.add_argument(
            "--user",
            default=None,
            help=f"Export as this user, within their sites (default: administrator '{DEFAULT_USER}').",
        )

    def handle(
        self, *args, file: str, fmt: str | None, deidentify: bool, user: str | None, **options
    ):
        path = Path(file)
        fmt = fmt or (path.suffix.lstrip(".").lower() if path.suffix else "csv")
        if fmt not in cohort_file.EXPORT_FORMATS:
            raise CommandError(
                f"Unknown format {fmt!r}: give --format {'/'.join(cohort_file.EXPORT_FORMATS)}."
            )
        exporter = command_user(user, default=DEFAULT_USER)
        try:
            result = cohort_file.export_cohort(path, user=exporter, fmt=fmt, deidentify=deidentify)
        except PermissionDenied as error:
            raise CommandError(str(error)) from error
        except OSError as error:
            raise CommandError(f"{path}: {error.strerror or error}") from error
        kind = "de-identified" if deidentify else "identified"
        labs = (
            "laboratory values on its sheet 'labs'"
            if result.labs_path is None
            else f"laboratory values {result.labs_path}"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {result.log.rows} patient(s), {kind}, to {result.path} ({fmt}); "
                f"{labs}; codebook {result.codebook_path}."
            )
        )
