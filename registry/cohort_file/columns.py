"""The columns of the cohort file (INTERFACES.md section 3) and of the laboratory file that goes
with it: their names, labels, kinds, allowed values and units, and which cells are required or
go together. The import, the export and the codebook all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from registry.domain.ranges import RANGES
from registry.domain.vocabulary import (
    Arm,
    DeathCause,
    DiseaseBurden,
    GradingSystem,
    PhStatus,
    RelapseStatus,
    Response,
    Sex,
    TransplantType,
)
from registry.models import LabValue
from registry.models.labs import LAB_FIELDS


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    kind: str  # text, site, enum, integer, grade, number, date; in de-identified files also days
    required: bool = False
    values: tuple[str, ...] = ()
    units: str = ""


def _values(enum) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


YES_NO = ("yes", "no")
GRADES = tuple(str(grade) for grade in range(6))

COLUMNS: tuple[Column, ...] = (
    Column("study_id", "Study ID (unique within the site)", "text", required=True),
    Column("site", "Site code", "site", required=True),
    Column("sex", "Sex", "enum", True, _values(Sex)),
    Column("year_of_birth", "Year of birth", "integer", required=True, units="year"),
    Column("ph_status", "Ph (BCR::ABL1) status", "enum", values=_values(PhStatus)),
    Column("arm", "Treatment arm", "enum", True, _values(Arm)),
    Column(
        "treatment_start",
        "Day 0: first day of blinatumomab cycle 1, or the CAR-T infusion",
        "date",
        required=True,
    ),
    Column("product", "Product / construct", "text"),
    Column("disease_burden", "Disease burden at day 0", "enum", True, _values(DiseaseBurden)),
    Column("bm_blast_pct", "Marrow blasts at day 0", "number", units="%"),
    Column("relapse_status", "Relapse status at day 0", "enum", True, _values(RelapseStatus)),
    Column("prior_hsct", "Previous allogeneic HSCT", "enum", values=YES_NO),
    Column("crs_grade", "Worst CRS grade (blank: CRS status unknown)", "grade", values=GRADES),
    Column(
        "crs_grading_system",
        "Grading system of the CRS grade (default astct2019)",
        "enum",
        values=_values(GradingSystem),
    ),
    Column(
        "icans_grade", "Worst ICANS grade (blank: ICANS status unknown)", "grade", values=GRADES
    ),
    Column("response", "Best response by day 90", "enum", values=_values(Response)),
    Column("response_date", "Date of the response assessment", "date"),
    Column("mrd_negative", "MRD negative (< 0.01%) at that assessment", "enum", values=YES_NO),
    Column(
        "hsct_type", "Allogeneic HSCT after treatment: type", "enum", values=_values(TransplantType)
    ),
    Column("hsct_date", "Allogeneic HSCT after treatment: date", "date"),
    Column("relapse_date", "First relapse or progression", "date"),
    Column("death_date", "Date of death", "date"),
    Column("death_cause", "Cause of death", "enum", values=_values(DeathCause)),
    Column(
        "last_contact_date",
        "Last contact (the date of death for a patient who died)",
        "date",
        required=True,
    ),
)
COLUMN_BY_NAME = {column.name: column for column in COLUMNS}

# INTERFACES.md section 3: a required column must be in the header, but a blank cell means
# unknown there too. These cells cannot be unknown: the patient or treatment needs them.
VALUE_REQUIRED = frozenset({"study_id", "site", "sex", "year_of_birth", "arm", "treatment_start"})

# Columns that go together: the second is required when the first is given, and vice versa.
PAIRED = (("response", "response_date"), ("hsct_type", "hsct_date"), ("death_date", "death_cause"))


# The flat file has one row per patient and cannot carry a series: the laboratory values of the
# exported patients' index treatments travel in a companion file (`<stem>-labs.csv`, a sheet
# "labs" of an .xlsx, `<stem>-labs.sav` / `.dta`), one row per value row of the treatment.
LAB_LABELS = {
    "anc_per_ul": "Absolute neutrophil count",
    "platelets_10e9_l": "Platelets",
    "haemoglobin_g_dl": "Haemoglobin",
    "crp_mg_l": "C-reactive protein",
    "ferritin_ng_ml": "Ferritin",
    "igg_g_l": "IgG",
    "cd19_b_cells_per_ul": "CD19+ B cells",
}
LAB_LABEL_PREFIX = "Laboratory file: "


def _lab_value_column(name: str) -> Column:
    model_field = LabValue._meta.get_field(name)
    kind = "integer" if isinstance(model_field, models.IntegerField) else "number"
    return Column(
        name,
        LAB_LABEL_PREFIX + LAB_LABELS[name],
        kind,
        units=RANGES[("LabValue", name)].unit,
    )


LAB_COLUMNS: tuple[Column, ...] = (
    Column("study_id", "Study ID (unique within the site)", "text", required=True),
    Column("site", "Site code", "site", required=True),
    Column("date", LAB_LABEL_PREFIX + "date of the sample", "date", required=True),
    *(_lab_value_column(name) for name in LAB_FIELDS),
)
LAB_COLUMN_BY_NAME = {column.name: column for column in LAB_COLUMNS}
LAB_VALUE_REQUIRED = frozenset({"study_id", "site", "date"})


LABS_SHEET = "labs"
