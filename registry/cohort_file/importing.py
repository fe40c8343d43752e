"""import_cohort: a cohort file (with its laboratory file) read and every cell parsed first, then
written inside one transaction, all or nothing; a dry run rolls back too. Each import is an
ImportRun (registry.import_runs), finished with its outcome and its problems.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from registry import import_runs, services
from registry.cohort_file.lab_import import LabsImport
from registry.cohort_file.limits import (
    TOO_SLOW,
    Deadline,
    ImportLimits,
    Message,
    UnreadableFile,
    number_text,
)
from registry.cohort_file.parsing import Problem, check_header, parse_row
from registry.cohort_file.reading import Table, binary_stream, read_labs, read_table, stream_size
from registry.cohort_file.row_import import RowImport, Sites
from registry.domain.identifiers import identifier_key
from registry.domain.vocabulary import Role
from registry.models import ImportRun, User
from registry.permissions import Action, can

logger = logging.getLogger(__name__)


@dataclass
class ImportResult:
    run: ImportRun
    problems: list[Problem]
    rows: int
    patients_created: int
    dry_run: bool
    lab_rows: int = 0  # rows of the laboratory file (None read: 0)
    lab_values_created: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def system_user(username: str) -> User:
    """The administrator that commands write as when no --user is given (nobody signs in as it)."""
    user, created = User.objects.get_or_create(
        username=username, defaults={"role": Role.ADMINISTRATOR}
    )
    if created:
        user.set_unusable_password()
        user.save()
    elif not user.is_administrator:
        raise PermissionDenied(
            f"User {username!r} exists and is not an administrator: name the user with --user."
        )
    return user


CONCURRENT_IMPORT = (
    "another import saved the same patients meanwhile: nothing of this file was saved"
)


def import_cohort(
    content: bytes | IO[bytes],
    *,
    name: str,
    user: User,
    dry_run: bool = False,
    create_sites: bool = False,
    via: str = "command",
    limits: ImportLimits | None = None,
    deadline: Deadline | None = None,
    labs: bytes | IO[bytes] | None = None,
    labs_name: str = "",
    labs_sheet: bool = True,
) -> ImportResult:
    """Import a cohort file, all or nothing; raises UnreadableFile (logged) for a bad file.

    `content` is the file's bytes or a seekable binary stream (an upload, an open file), read
    as a stream within `limits` (default: the settings) and `deadline` (from them). `labs` is
    the laboratory file that goes with it (LAB_COLUMNS; `labs_name` its name), imported after
    the patients in the same transaction; without one, an .xlsx's sheet "labs" is it (unless
    `labs_sheet` is False).
    """
    if not can(user, Action.IMPORT):
        raise PermissionDenied("Only data managers and administrators may import a cohort file.")
    limits = limits or ImportLimits.from_settings()
    deadline = deadline or Deadline(limits.max_seconds)
    stream = binary_stream(content)
    run = import_runs.start(
        user=user,
        file_name=Path(name).name[:255],
        file_sha256=_sha256(stream, limits),
        dry_run=dry_run,
        create_sites=create_sites,
        via=via,
    )
    try:
        table = read_table(stream, limits=limits, deadline=deadline)
    except UnreadableFile as error:
        _finish(run, ImportRun.Outcome.UNREADABLE, [Problem(1, "-", error.message)], rows=0)
        raise
    try:
        labs_table = read_labs(stream, labs, limits=limits, deadline=deadline, sheet=labs_sheet)
    except UnreadableFile as error:
        problem = Problem(1, "-", error.message, labs=True)
        _finish(run, ImportRun.Outcome.UNREADABLE, [problem], rows=len(table.rows))
        raise UnreadableFile(
            LABS_UNREADABLE, name=Path(labs_name or name).name, error=error.message
        ) from error
    reason = f"import of {run.file_name} (run {run.pk}) by {user.username}"
    # Messages are stored and printed in English, like the data-quality queries.
    with translation.override("en"):
        try:
            problems, created, lab_values = _import_table(
                table,
                user=user,
                reason=reason,
                dry_run=dry_run,
                create_sites=create_sites,
                deadline=deadline,
                labs_table=labs_table,
            )
        except IntegrityError:
            # Another import saved the same patients meanwhile (the database's unique
            # constraint refused them here): this one is rejected, nothing of it saved.
            problems, created, lab_values = [Problem(1, "study_id", CONCURRENT_IMPORT)], 0, 0
        except BaseException:
            _finish_failed(run, rows=len(table.rows))
            raise
    if problems:
        outcome, created, lab_values = ImportRun.Outcome.REJECTED, 0, 0
    elif dry_run:
        outcome, created, lab_values = ImportRun.Outcome.VALIDATED, 0, 0
    else:
        outcome = ImportRun.Outcome.IMPORTED
    _finish(run, outcome, problems, rows=len(table.rows), created=created)
    lab_rows = len(labs_table.rows) if labs_table is not None else 0
    return ImportResult(run, problems, len(table.rows), created, dry_run, lab_rows, lab_values)


LABS_UNREADABLE = _("The laboratory file %(name)s: %(error)s")


def _finish(
    run: ImportRun, outcome: str, problems: list[Problem], *, rows: int, created: int = 0
) -> None:
    run.outcome = outcome
    run.finished_at = timezone.now()
    run.rows = rows
    run.patients_created = created
    run.problem_count = len(problems)
    run.problems = "\n".join(str(problem) for problem in problems[:200])
    try:
        run.save()
    finally:
        import_runs.release(run)


def _finish_failed(run: ImportRun, *, rows: int) -> None:
    """The import failed (the database went away, a bug): its transaction rolled back. If the
    database cannot record that either, the run is closed later (import_runs.close_abandoned)
    and the import's own error is the one raised."""
    try:
        _finish(run, ImportRun.Outcome.FAILED, [], rows=rows)
    except DatabaseError:
        logger.warning("import run %s failed; the database did not record it: closed later", run.pk)


def _sha256(stream: IO[bytes], limits: ImportLimits) -> str:
    """The file's SHA-256, read in chunks; blank for a file over the size limit (refused)."""
    if stream_size(stream) > limits.max_bytes:
        return ""
    digest = hashlib.sha256()
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _import_table(
    table: Table,
    *,
    user: User,
    reason: str,
    dry_run: bool,
    create_sites: bool,
    deadline: Deadline | None = None,
    labs_table: Table | None = None,
) -> tuple[list[Problem], int, int]:
    """(problems, patients created, laboratory values created) of the file, written in one
    transaction, rolled back on any problem or for a dry run."""
    deadline = deadline or Deadline(ImportLimits.from_settings().max_seconds)
    header_problems, positions = check_header(table.header, formulas=table.formulas)
    width = len(table.header)
    parsed = []
    for number, cells in table.rows:
        if deadline.expired():
            too_slow = Message(TOO_SLOW, seconds=number_text(deadline.seconds))
            return [Problem(number, "-", too_slow)], 0, 0
        parsed.append(parse_row(number, cells, positions, width=width))
    problems = list(header_problems)
    created = lab_values = 0
    stopped = False
    # All or nothing: one transaction, no savepoint per record, the audit rows and the
    # data-quality queries written together at the end (registry.services).
    with (
        transaction.atomic(),
        services.batched_writes(),
        services.queries_refreshed_together(),
    ):
        sites = Sites(user=user, create=create_sites)
        first_row: dict[tuple[str, str], int] = {}
        imports: dict[tuple[str, str], RowImport] = {}  # by (site, study ID) key
        for row in parsed:
            if deadline.expired():
                # The transaction is not held past the time an import may take: stopped here,
                # and (a problem) everything rolled back.
                problems.append(
                    Problem(
                        row.number, "-", Message(TOO_SLOW, seconds=number_text(deadline.seconds))
                    )
                )
                stopped = True
                break
            site = sites.resolve(row)
            study_id = row.get("study_id")
            if study_id is not None and row.get("site") is not None:
                key = (identifier_key(row.get("site")), identifier_key(study_id))
                if key in first_row:
                    row.add(
                        "study_id",
                        f"study ID {study_id} appears twice in the file (first on row "
                        f"{first_row[key]})",
                    )
                    problems += row.problems
                    continue
                first_row[key] = row.number
            row_import, patient = RowImport(row, user=user, reason=reason), None
            if study_id is not None and row.get("site") is not None:
                imports[key] = row_import
            try:
                # The rules across the patient's records, once the row's records are written.
                with services.patient_checks_deferred():
                    patient = row_import.run(site)
            except ValidationError as error:
                row_import.report_patient_rules(error)
            if patient is not None and not row.problems:
                created += 1
            problems += row.problems
        if labs_table is not None and not stopped:
            labs_import = LabsImport(
                labs_table, imports, sites=sites, user=user, reason=reason, deadline=deadline
            )
            lab_problems, lab_values = labs_import.run()
            problems += lab_problems
        if problems or dry_run:
            transaction.set_rollback(True)
    return problems, created, lab_values
