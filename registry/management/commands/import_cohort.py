"""`import_cohort FILE [--labs LABSFILE] [--no-labs] [--dry-run] [--create-sites]`
(INTERFACES.md sections 2 and 3).

The laboratory file (one row per treatment and date, as export_cohort writes it) is imported
after the patients, in the same all-or-nothing transaction: the one named by --labs, or else
the file `<FILE stem>-labs.csv` beside FILE when there is one, or else an .xlsx's sheet "labs"
(--no-labs: none of these two). Its problems print as `labs row R, column C: message`.

Exit status 0: imported (or, with --dry-run, would import); 1: rejected, nothing saved, one line
per problem as `row R, column C: message`; 2: the file cannot be read; 3: the database failed
during the import (it stopped, or its disk is full): nothing saved, try again once it is back.
The logic is in registry.cohort_file; this command only opens the file, prints and sets the
status. The file is read as a stream within the same bounds as an upload
(cohort_file.ImportLimits).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError
from django.utils import translation

from registry import cohort_file
from registry.models import User

IMPORTED, REJECTED, UNREADABLE, DATABASE_FAILED = 0, 1, 2, 3
DEFAULT_USER = "import"


class Command(BaseCommand):
    help = (
        "Import a flat cohort file (UTF-8 CSV or .xlsx, INTERFACES.md section 3) all or nothing, "
        "through the same validation as the forms. Exit status 0 imported, 1 rejected (every "
        "problem printed as 'row R, column C: message'), 2 unreadable file, 3 the database "
        "failed (nothing saved: try again once it is back)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The cohort file (.csv or .xlsx).")
        parser.add_argument(
            "--labs",
            default=None,
            help="The laboratory file (.csv or .xlsx); default: <FILE stem>-labs.csv beside FILE "
            "if it exists, or an .xlsx's sheet 'labs'.",
        )
        parser.add_argument(
            "--no-labs",
            action="store_true",
            help="Import no laboratory values unless --labs names a file (no file beside FILE, "
            "no sheet 'labs').",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check everything, then save nothing."
        )
        parser.add_argument(
            "--create-sites",
            action="store_true",
            help="Create the sites whose codes the registry does not know (administrators).",
        )
        parser.add_argument(
            "--user",
            default=None,
            help=f"Import as this user (default: the system administrator '{DEFAULT_USER}').",
        )

    def handle(
        self,
        *args,
        file: str,
        labs: str | None,
        no_labs: bool,
        dry_run: bool,
        create_sites: bool,
        user: str | None,
        **options,
    ):
        path = Path(file)
        labs_path = labs_file(path, labs, no_labs=no_labs)
        with ExitStack() as files:
            # Read as streams within the same limits as an upload (ImportLimits).
            content = self._open(files, path)
            labs_content = None if labs_path is None else self._open(files, labs_path)
            if labs_path is not None and labs is None:
                self.stdout.write(f"Laboratory values from {labs_path.name}, beside {path.name}.")
            importer = command_user(user, default=DEFAULT_USER)
            started = time.perf_counter()
            try:
                result = cohort_file.import_cohort(
                    content,
                    name=path.name,
                    user=importer,
                    dry_run=dry_run,
                    create_sites=create_sites,
                    labs=labs_content,
                    labs_name=labs_path.name if labs_path is not None else "",
                    labs_sheet=not no_labs,
                )
            except (OperationalError, InterfaceError):  # the database went away or is full
                # The transaction rolled back; the error's text (the server's address) stays out.
                self.stderr.write(
                    f"{path.name}: the database failed during the import (it stopped, or it has "
                    "no space left): nothing of the file was saved. Try again once it is back."
                )
                sys.exit(DATABASE_FAILED)
            except cohort_file.UnreadableFile as error:
                with translation.override("en"):
                    self.stderr.write(f"{path}: {error}")
                sys.exit(UNREADABLE)
            except PermissionDenied as error:
                raise CommandError(str(error)) from error
        elapsed = time.perf_counter() - started
        if not result.ok:
            for problem in result.problems:
                self.stdout.write(str(problem))
            rows = f"{result.rows} row(s)"
            if result.lab_rows:
                rows += f" and {result.lab_rows} laboratory row(s)"
            self.stderr.write(
                f"{path.name}: rejected, nothing saved: {len(result.problems)} problem(s) in "
                f"{rows} (run {result.run.pk})."
            )
            sys.exit(REJECTED)
        if dry_run:
            message = f"{path.name}: dry run, {result.rows} patient(s)"
            if result.lab_rows:
                message += f" and {result.lab_rows} laboratory value row(s)"
            message += " would be imported; nothing saved"
        else:
            message = f"{path.name}: imported {result.patients_created} patient(s)"
            if result.lab_rows:
                message += f" and {result.lab_values_created} laboratory value row(s)"
        self.stdout.write(self.style.SUCCESS(f"{message} (run {result.run.pk}, {elapsed:.1f} s)."))

    def _open(self, files: ExitStack, path: Path) -> IO[bytes]:
        try:
            return files.enter_context(path.open("rb"))
        except OSError as error:
            self.stderr.write(f"{path}: cannot be read: {error.strerror or error}")
            sys.exit(UNREADABLE)


def labs_file(path: Path, labs: str | None, *, no_labs: bool) -> Path | None:
    """The laboratory file: --labs, else `<stem>-labs.csv` beside the cohort file if it is
    there (not with --no-labs). An .xlsx without either is read for its sheet "labs"."""
    if labs is not None:
        return Path(labs)
    sibling = path.with_name(f"{path.stem}-labs.csv")
    if no_labs or not sibling.is_file():
        return None
    return sibling


def command_user(username: str | None, *, default: str) -> User:
    """The --user, or the system administrator the command runs as by default."""
    if username is None:
        try:
            return cohort_file.system_user(default)
        except PermissionDenied as error:
            raise CommandError(str(error)) from error
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active user {username!r}.")
    return user
