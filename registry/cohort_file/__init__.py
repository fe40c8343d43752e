"""The flat cohort file of INTERFACES.md section 3: import it, and export the analysis set in it.

Import. The file (UTF-8 CSV, or the first sheet of an .xlsx) is read and every cell parsed
first; then, inside one transaction, each row becomes the patient's records written through
registry.services (the same rules, derivations and audit as the forms), and every problem is
collected as `row R, column C: message`, not only the first. Any problem rolls everything back;
a dry run rolls back too. Each record's history names the import run and the user.

Export. The analysis set (SAP.md section 1: each patient's first index treatment by day 0),
one row per patient in the same columns, so that an exported file imports again. The rows are
read in chunks with a fixed number of queries per chunk, and written as they are read. A
de-identified export (docs/DEIDENTIFICATION.md) replaces study IDs by random codes, dates by
days from day 0 and the year of birth by the age at day 0, leaves out free text, and shuffles
the rows. Every text cell of every format goes through export_value (no live formula). Every
export is logged (registry.models.ExportLog).

The modules, in the order a file goes through them:
  columns       the columns of the cohort file and of its laboratory file
  limits        the bounds of an import and the exceptions that refuse a file
  reading       a CSV or .xlsx file into a Table (xlsx_reading: the .xlsx sheet, streamed)
  parsing       cells into values, the header and each row checked, the problems
  importing     import_cohort, all or nothing (row_import: a patient's records;
                lab_import: the laboratory file's series)
  analysis_set  the analysis set read as flat rows
  deidentify    the de-identified columns and rows
  cells         the formula escape of every exported text cell, undone on import
  writing       CSV, .xlsx, .sav and .dta files;  codebook  the variables of an export
  export        export_cohort: permission, log, and the files written whole

The names below are what the rest of the registry uses; the modules hold the rest.
"""

from registry.cohort_file.codebook import codebook, write_codebook
from registry.cohort_file.columns import COLUMNS, LAB_COLUMNS, Column
from registry.cohort_file.deidentify import export_columns
from registry.cohort_file.export import (
    EXPORT_FORMATS,
    ExportResult,
    check_export_allowed,
    export_allowed,
    export_cohort,
    export_rows,
    labs_path_of,
    log_export,
    write_export,
)
from registry.cohort_file.importing import ImportResult, import_cohort, system_user
from registry.cohort_file.limits import Deadline, ImportLimits, LimitExceeded, UnreadableFile
from registry.cohort_file.writing import csv_lines

__all__ = [
    "COLUMNS",
    "EXPORT_FORMATS",
    "LAB_COLUMNS",
    "Column",
    "Deadline",
    "ExportResult",
    "ImportLimits",
    "ImportResult",
    "LimitExceeded",
    "UnreadableFile",
    "check_export_allowed",
    "codebook",
    "csv_lines",
    "export_allowed",
    "export_cohort",
    "export_columns",
    "export_rows",
    "import_cohort",
    "labs_path_of",
    "log_export",
    "system_user",
    "write_codebook",
    "write_export",
]
