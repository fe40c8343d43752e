"""`import_cohort FILE [--dry-run] [--create-sites]` (INTERFACES.md sections 2 and 3).

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
from pathlib import Path

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
        self, *args, file: str, dry_run: bool, create_sites: bool, user: str | None, **options
    ):
        path = Path(file)
        try:
            # Read as a stream within the same limits as an upload (ImportLimits).
            content = path.open("rb")
        except OSError as error:
            self.stderr.write(f"{path}: cannot be read: {error.strerror or error}")
            sys.exit(UNREADABLE)
        with content:
            importer = command_user(user, default=DEFAULT_USER)
            started = time.perf_counter()
            try:
                result = cohort_file.import_cohort(
                    content,
                    name=path.name,
                    user=importer,
                    dry_run=dry_run,
                    create_sites=create_sites,
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
            self.stderr.write(
                f"{path.name}: rejected, nothing saved: {len(result.problems)} problem(s) in "
                f"{result.rows} row(s) (run {result.run.pk})."
            )
            sys.exit(REJECTED)
        if dry_run:
            message = (
                f"{path.name}: dry run, {result.rows} patient(s) would be imported; nothing saved"
            )
        else:
            message = f"{path.name}: imported {result.patients_created} patient(s)"
        self.stdout.write(self.style.SUCCESS(f"{message} (run {result.run.pk}, {elapsed:.1f} s)."))


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
