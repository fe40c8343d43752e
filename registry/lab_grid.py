"""The nurse's grid of a treatment's laboratory values: reading a series pasted from a
spreadsheet, and drawing the ANC curve beside the derived ICAHT grades (registry.lab_views).

Nothing here writes: the grid is saved by registry.services.lab_series_save alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape

from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from registry.domain.icaht import ANC_100, ANC_500, EARLY_LAST_DAY, LATE_LAST_DAY
from registry.models.labs import LAB_FIELDS

# --- pasting ---------------------------------------------------------------------------------

# The columns of a pasted series without a header row: the grid's, in its order.
PASTE_COLUMNS = ("date", *LAB_FIELDS)

# How a header cell names a column (lower case, units and punctuation left out): the grid's
# English and Chinese headings and the abbreviations of laboratory printouts.
HEADER_NAMES = {
    "date": ("date", "day", "days", "日期", "天", "天数", "第几天"),
    "anc_per_ul": ("anc", "neutrophils", "neut", "neu", "中性粒细胞", "中性粒细胞绝对值"),
    "platelets_10e9_l": ("platelets", "platelet", "plt", "血小板"),
    "haemoglobin_g_dl": ("haemoglobin", "hemoglobin", "hb", "hgb", "血红蛋白"),
    "crp_mg_l": ("crp", "c-reactive protein", "c反应蛋白"),
    "ferritin_ng_ml": ("ferritin", "ferr", "铁蛋白"),
    "igg_g_l": ("igg", "immunoglobulin g", "免疫球蛋白g"),
    "cd19_b_cells_per_ul": ("cd19", "cd19+", "cd19+ b cells", "b cells", "cd19+ b细胞", "b细胞"),
}
_COLUMN_OF_NAME = {name: column for column, names in HEADER_NAMES.items() for name in names}
_DAY_NUMBER = re.compile(r"^(?:d|day|第)?\s*([+-]?\d{1,4})\s*(?:天)?$", re.IGNORECASE)
_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
MAX_PASTED_LINES = 400


@dataclass
class Pasted:
    """A pasted series: its rows ({column: text}, the date as YYYY-MM-DD) and what was left
    out, each as a sentence for the nurse."""

    rows: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _header_column(cell: str) -> str | None:
    name = re.sub(r"\(.*?\)|（.*?）|[:：]", "", cell).strip().lower()
    return _COLUMN_OF_NAME.get(name) or _COLUMN_OF_NAME.get(name.split(" ")[0] if name else "")


def pasted_date(text: str, day0: date) -> date | None:
    """A date cell: YYYY-MM-DD (or with / or .), or a day number counted from day 0 ("7",
    "D7", "day 7", "-3"); None when it is neither."""
    text = text.strip()
    if match := _ISO_DATE.match(text):
        try:
            return date(*(int(part) for part in match.groups()))
        except ValueError:
            return None
    if match := _DAY_NUMBER.match(text):
        try:
            return day0 + timedelta(days=int(match.group(1)))
        except OverflowError:
            return None
    return None


def _cells(line: str, separator: str) -> list[str]:
    return [cell.strip().strip('"').strip() for cell in line.split(separator)]


def parse_pasted(text: str, *, day0: date) -> Pasted:
    """The rows of a series copied from a spreadsheet: one line a day, cells separated by tabs
    (as a spreadsheet copies them) or commas (or semicolons), the date first unless a header
    row says otherwise. A first line whose first cell is not a date is a header naming the
    columns (HEADER_NAMES); without one the columns are those of the grid, in its order. The
    values are kept as typed: the grid's save checks them, each at its row and column."""
    pasted = Pasted()
    lines = [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line.strip()]
    if len(lines) > MAX_PASTED_LINES:
        pasted.problems.append(
            _("Only the first %(count)s lines were read; paste the rest separately.")
            % {"count": MAX_PASTED_LINES}
        )
        lines = lines[:MAX_PASTED_LINES]
    if not lines:
        return pasted
    sample = "\n".join(lines[:5])
    separator = (
        "\t" if "\t" in sample else ("," if "," in sample else ";" if ";" in sample else "\t")
    )
    columns: list[str | None] = list(PASTE_COLUMNS)
    first = _cells(lines[0], separator)
    header = pasted_date(first[0], day0) is None
    if header:
        columns = [_header_column(cell) for cell in first]
        for cell, column in zip(first, columns, strict=True):
            if column is None and cell:
                pasted.problems.append(
                    _(
                        "The column “%(name)s” is not a laboratory value of the grid; it was left out."
                    )
                    % {"name": cell}
                )
        if "date" not in columns:
            pasted.problems.append(
                _("No column of dates or day numbers was found: name it “date” or “day”.")
            )
            return pasted
        lines = lines[1:]
    for number, line in enumerate(lines, start=2 if header else 1):
        cells = _cells(line, separator)
        row: dict[str, str] = {}
        for column, cell in zip(columns, cells, strict=False):
            if column is not None and cell and column not in row:
                row[column] = cell
        if len(cells) > len(columns) and any(cells[len(columns) :]):
            pasted.problems.append(
                _("Line %(line)s has more cells than columns; the extra cells were left out.")
                % {"line": number}
            )
        when = pasted_date(row.get("date", ""), day0)
        if when is None:
            pasted.problems.append(
                _(
                    "Line %(line)s was left out: “%(date)s” is neither a date (YYYY-MM-DD) "
                    "nor a day number counted from day 0."
                )
                % {"line": number, "date": row.get("date", "")}
            )
            continue
        row["date"] = when.isoformat()
        pasted.rows.append(row)
    return pasted


def merged_into_grid(
    grid: Sequence[dict[str, str]], pasted: Iterable[dict[str, str]]
) -> list[dict[str, str]]:
    """The grid's rows with the pasted ones put in: a pasted row of a date that a row of the
    grid has fills that row's cells it gives (an empty pasted cell leaves the grid's value);
    any other is a new row. Empty new rows of the grid are dropped."""
    rows = [dict(row) for row in grid if row.get("id") or any(row.get(c) for c in PASTE_COLUMNS)]
    by_date = {}
    for row in rows:
        by_date.setdefault(row.get("date", ""), row)
    for new in pasted:
        target = by_date.get(new["date"])
        if target is None:
            target = {"date": new["date"]}
            rows.append(target)
            by_date[new["date"]] = target
        for column, value in new.items():
            if value != "":
                target[column] = value
    return rows


# --- the ANC curve ---------------------------------------------------------------------------

# The plot, in SVG user units (it scales to the width of its box).
WIDTH, HEIGHT = 540, 280
LEFT, RIGHT, TOP, BOTTOM = 74, 62, 16, 46
# A logarithmic axis: the nadir (tens per µL) and the recovery (thousands) both readable, and
# the 100 and 500 lines apart. Counts below its floor are drawn on it.
ANC_FLOOR, ANC_CEILING = 10.0, 50_000.0
ANC_TICKS = (10, 100, 500, 1_000, 10_000)


def _y(anc: float) -> float:
    value = min(max(anc, ANC_FLOOR), ANC_CEILING)
    share = (math.log10(value) - math.log10(ANC_FLOOR)) / (
        math.log10(ANC_CEILING) - math.log10(ANC_FLOOR)
    )
    return TOP + (1 - share) * (HEIGHT - TOP - BOTTOM)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def anc_curve(points: Iterable[tuple[int, float]]) -> dict:
    """The figure of a treatment's ANC by day after day 0 (the lowest count of a day): days
    0-30, to day 100 when a count after day 30 is recorded; the 500 and 100/µL lines. Returns
    {"svg": inline SVG, "last_day": 30 or 100, "count": counts drawn, "lowest": (day, ANC) or
    None}."""
    lowest_of_day: dict[int, float] = {}
    for day, anc in points:
        if 0 <= day <= LATE_LAST_DAY:
            lowest_of_day[day] = min(float(anc), lowest_of_day.get(day, float(anc)))
    last_day = (
        LATE_LAST_DAY if any(day > EARLY_LAST_DAY for day in lowest_of_day) else EARLY_LAST_DAY
    )
    plot_width = WIDTH - LEFT - RIGHT

    def x(day: int) -> float:
        return LEFT + day / last_day * plot_width

    days = sorted(lowest_of_day)
    lowest = min(((lowest_of_day[d], d) for d in days), default=None)
    title = (
        _("Absolute neutrophil count (ANC), days 0-30")
        if last_day == EARLY_LAST_DAY
        else _("Absolute neutrophil count (ANC), days 0-100")
    )
    if lowest is None:
        description = _("No ANC is recorded from day 0 to day %(day)s.") % {"day": last_day}
    else:
        description = _(
            "%(count)s daily counts; the lowest, %(anc)s/µL, on day %(day)s. Counts below "
            "10/µL are drawn at 10."
        ) % {"count": len(days), "anc": _number(lowest[0]), "day": lowest[1]}
    bottom = HEIGHT - BOTTOM
    parts = [
        f'<svg class="anc-curve" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="anc-curve-title anc-curve-desc" data-testid="anc-curve" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="anc-curve-title">{escape(title)}</title>',
        f'<desc id="anc-curve-desc">{escape(description)}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{bottom - TOP}" '
        'fill="#fff" stroke="#9aa5b1"/>',
    ]
    for tick in ANC_TICKS:
        y = _y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_number(tick)}</text>"
        )
    step = 5 if last_day == EARLY_LAST_DAY else 10
    for day in range(0, last_day + 1, step):
        parts.append(
            f'<line x1="{x(day):.1f}" x2="{x(day):.1f}" y1="{bottom}" y2="{bottom + 4}" '
            f'stroke="#52606d"/><text x="{x(day):.1f}" y="{bottom + 17}" text-anchor="middle" '
            f'class="tick">{day}</text>'
        )
    if last_day > EARLY_LAST_DAY:  # where the early window ends
        parts.append(
            f'<line x1="{x(EARLY_LAST_DAY):.1f}" x2="{x(EARLY_LAST_DAY):.1f}" y1="{TOP}" '
            f'y2="{bottom}" stroke="#9aa5b1" stroke-dasharray="2 3"/>'
        )
    for threshold, colour, dash in ((ANC_500, "#b45309", "6 4"), (ANC_100, "#b91c1c", "3 3")):
        y = _y(threshold)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}"/>'
            f'<text x="{WIDTH - RIGHT + 4}" y="{y + 4:.1f}" class="threshold" fill="{colour}">'
            f"{_number(threshold)}/µL</text>"
        )
    if days:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(d):.1f},{_y(lowest_of_day[d]):.1f}"
            for i, d in enumerate(days)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="#0b4f6c" stroke-width="2"/>')
        parts += [
            f'<circle cx="{x(d):.1f}" cy="{_y(lowest_of_day[d]):.1f}" r="3" fill="#0b4f6c"/>'
            for d in days
        ]
    parts.append(
        f'<text x="{LEFT + plot_width / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'class="axis">{escape(_("Day after day 0"))}</text>'
        f'<text transform="translate(16 {TOP + (bottom - TOP) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" class="axis">{escape(_("ANC (cells/µL, log scale)"))}</text>'
        "</svg>"
    )
    svg: SafeString = mark_safe("".join(parts))  # every text escaped above
    return {
        "svg": svg,
        "last_day": last_day,
        "count": len(days),
        "lowest": None if lowest is None else (lowest[1], lowest[0]),
    }
