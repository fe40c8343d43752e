"""The laboratory file's rows, grouped by patient and written as each patient's series through
services.lab_series_save, every problem kept as `labs row R, column C: message`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models

from registry import services
from registry.cohort_file.columns import LAB_COLUMN_BY_NAME
from registry.cohort_file.limits import TOO_SLOW, Deadline, Message, number_text
from registry.cohort_file.parsing import ParsedRow, Problem, check_header, parse_lab_row
from registry.cohort_file.reading import Table
from registry.cohort_file.row_import import PARENT_FIELDS, RowImport, Sites
from registry.domain.identifiers import identifier_key
from registry.models import LabValue, Patient, User
from registry.models.labs import LAB_FIELDS
from registry.permissions import Action, can


class LabsImport:
    """The laboratory file: its rows grouped by patient, each patient's series written through
    services.lab_series_save (one audited write per treatment, ICAHT derived on it), every
    problem kept as `labs row R, column C: message`. A row must name a patient of the cohort
    file (the file carries their series, not other patients')."""

    def __init__(
        self,
        table: Table,
        imports: dict[tuple[str, str], RowImport],
        *,
        sites: Sites,
        user: User,
        reason: str,
        deadline: Deadline,
    ) -> None:
        self.table, self.imports, self.sites = table, imports, sites
        self.user, self.reason, self.deadline = user, reason, deadline

    def run(self) -> tuple[list[Problem], int]:
        header_problems, positions = check_header(
            self.table.header, formulas=self.table.formulas, labs=True
        )
        width = len(self.table.header)
        parsed: list[ParsedRow] = []
        series: dict[tuple[str, str], list[ParsedRow]] = {}
        for number, cells in self.table.rows:
            if self.deadline.expired():
                return [self._too_slow(number)], 0
            row = parse_lab_row(number, cells, positions, width=width)
            parsed.append(row)
            site, study_id = row.get("site"), row.get("study_id")
            if site is None or study_id is None:
                continue
            key = (identifier_key(site), identifier_key(study_id))
            if key in self.imports:
                series.setdefault(key, []).append(row)
            else:
                row.add("study_id", self._not_in_the_file(site, study_id))
        created = 0
        for key, rows in series.items():
            if self.deadline.expired():
                return [self._too_slow(rows[0].number)], 0
            created += self._series(self.imports[key], [row for row in rows if not row.problems])
        problems = header_problems + [problem for row in parsed for problem in row.problems]
        return problems, created

    def _too_slow(self, number: int) -> Problem:
        message = Message(TOO_SLOW, seconds=number_text(self.deadline.seconds))
        return Problem(number, "-", message, labs=True)

    def _not_in_the_file(self, site: str, study_id: str) -> str:
        known = self.sites.by_code.get(identifier_key(site))
        if known is not None and can(self.user, Action.VIEW, known.pk):
            exists = Patient.objects.filter(
                site=known, study_id_key=identifier_key(study_id)
            ).exists()
            if exists:
                return (
                    f"patient {study_id} at site {site} is in the registry but not in the cohort "
                    "file: the laboratory file carries the series of the file's own patients "
                    "(enter the others on the treatment's page or through the API)"
                )
        return f"no patient {study_id} at site {site} in the cohort file"

    def _series(self, row_import: RowImport, rows: list[ParsedRow]) -> int:
        """Write one patient's rows (those whose cells parsed); the number of values written."""
        if not rows:
            return 0
        values = [{name: row.get(name) for name in ("date", *LAB_FIELDS)} for row in rows]
        treatment = row_import.treatment
        if not row_import.treatment_saved or treatment is None:
            # The patient's row was refused: its laboratory values are checked, not written.
            if treatment is not None:
                for row, fields in zip(rows, values, strict=True):
                    self._check_unsaved(row, LabValue(treatment=treatment, **fields))
            return 0
        try:
            written = services.lab_series_save(
                treatment=treatment, rows=values, user=self.user, reason=self.reason
            )
        except services.LabSeriesRefused as refused:
            for index, columns in refused.rows.items():
                for column, messages in columns.items():
                    for message in messages:
                        rows[index].add(_lab_column(column), message)
            return 0
        except ValidationError as error:  # a rule across the patient's records
            for column, messages in error.message_dict.items():
                for message in messages:
                    rows[0].add(_lab_column(column), message)
            return 0
        except PermissionDenied as error:
            rows[0].add("site", str(error))
            return 0
        return len(written)

    def _check_unsaved(self, row: ParsedRow, lab: LabValue) -> None:
        try:
            services.full_validate(lab)
        except ValidationError as error:
            for column, messages in error.message_dict.items():
                if column in PARENT_FIELDS:
                    continue
                for message in messages:
                    row.add(_lab_column(column), message)
        except (ValueError, TypeError, models.ObjectDoesNotExist):
            pass  # a rule that needs the saved treatment: the patient's row is refused anyway


def _lab_column(field_name: str) -> str:
    """The laboratory file's column of a LabValue field's message (the row's date otherwise)."""
    return field_name if field_name in LAB_COLUMN_BY_NAME else "date"
