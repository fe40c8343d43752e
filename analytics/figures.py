"""The figures of an analytics snapshot as SVG: Kaplan-Meier plots with the numbers at risk
beneath, and the CRS grade chart (the analytics pages and the monthly PDF show the same ones).

Input is the snapshot output (SAP.md section 10: curves in months with their CI, and the numbers
at risk at the SAP's months), never the registry. Text stays text in the SVG (searchable,
translatable, rendered in the page's CJK-capable fonts), and the same input gives the same bytes.
`FIGURES` names each figure and draws it in the active language; analytics.snapshot_figures
keeps them with their snapshot.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: pages, workers and the PDF render off-screen

from django.utils.translation import get_language
from django.utils.translation import gettext as _
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from analytics.comparison_tables import covariate_names, level_names

ARM_COLOURS = {"blinatumomab": "#0b6fa4", "car_t": "#c2410c"}
STATE_COLOURS = {"not_transplanted": "#6b7280", "transplanted": "#15803d"}
STYLE = {
    "svg.fonttype": "none",  # text as <text>, not paths
    "svg.hashsalt": "immunoreg",  # stable element ids
    # Fallback in order: Latin from DejaVu, CJK from WenQuanYi (README: fonts-wqy-microhei).
    "font.family": ["DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC", "sans-serif"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Curve:
    """One step curve: points {"t": months, "s": S(t), "lo": ..., "hi": ...} (band optional)."""

    label: str
    points: Sequence[Mapping[str, Any]]
    at_risk: Mapping[str, int]
    colour: str
    # Left-truncated curves (Simon-Makuch) also stay flat where patients enter: no ticks there.
    censoring_ticks: bool = True


def _svg(figure: Figure) -> str:
    """The figure as SVG text, dated nowhere (the same input gives the same bytes)."""
    buffer = io.StringIO()
    with warnings.catch_warnings():
        # Text stays text: the viewer's fonts draw it, so a CJK glyph missing from the fonts
        # matplotlib measures with only shifts the layout by a little.
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def km_svg(
    curves: Sequence[Curve],
    *,
    title: str,
    x_label: str,
    y_label: str,
    at_risk_label: str,
) -> str:
    """A Kaplan-Meier figure: steps, 95% bands where given, censoring ticks, and a table of the
    numbers at risk aligned with the x axis ticks (the months of `at_risk`)."""
    months = sorted({float(m) for curve in curves for m in curve.at_risk}) or [0.0]
    horizon = months[-1] * 1.04 if months[-1] > 0 else 1.0
    with rc_context(STYLE):
        figure = Figure(figsize=(7.0, 3.6 + 0.22 * len(curves)), layout="constrained")
        plot, table = figure.subplots(
            2, 1, sharex=True, height_ratios=[5.0, 0.55 + 0.3 * len(curves)]
        )
        for curve in curves:
            draw_curve(plot, curve, horizon)
        plot.set(title=title, ylabel=y_label, ylim=(0, 1.02), xlim=(0, horizon))
        plot.set_xticks(months)
        plot.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        plot.grid(axis="y", alpha=0.25)
        if plot.get_legend_handles_labels()[0]:
            plot.legend(loc="lower left", frameon=False)
        draw_at_risk(table, curves, months, at_risk_label)
        table.set_xlabel(x_label)
        return _svg(figure)


def draw_curve(plot: Any, curve: Curve, horizon: float) -> None:
    known = [p for p in curve.points if p.get("s") is not None]
    points = [p for p in known if p["t"] <= horizon]
    if not points:
        return
    times = [float(p["t"]) for p in points]
    survival = [float(p["s"]) for p in points]
    if times[0] > 0:  # every curve starts at 1 on day 0
        times, survival = [0.0, *times], [1.0, *survival]
    steps_t, steps_s = list(times), list(survival)
    if len(points) < len(known):  # follow-up goes on beyond the plot: draw to its edge
        steps_t.append(horizon)
        steps_s.append(survival[-1])
    plot.step(steps_t, steps_s, where="post", color=curve.colour, label=curve.label, lw=1.6)
    band = [p for p in points if p.get("lo") is not None and p.get("hi") is not None]
    if band:
        plot.fill_between(
            [float(p["t"]) for p in band],
            [float(p["lo"]) for p in band],
            [float(p["hi"]) for p in band],
            step="post",
            color=curve.colour,
            alpha=0.12,
            lw=0,
        )
    if not curve.censoring_ticks:
        return
    # A time where the curve does not drop is a censoring time.
    censored = [
        (times[i], survival[i]) for i in range(1, len(times)) if survival[i] == survival[i - 1]
    ]
    if censored:
        plot.plot(
            [t for t, _ in censored],
            [s for _, s in censored],
            ls="none",
            marker="|",
            ms=6,
            color=curve.colour,
        )


def draw_at_risk(table: Any, curves: Sequence[Curve], months: Sequence[float], label: str) -> None:
    """The numbers at risk, one row per curve, labelled like y ticks so the layout makes room."""
    rows = range(len(curves) - 1, -1, -1)
    table.set_ylim(-0.6, len(curves) - 0.4)
    table.set_yticks(list(rows), [curve.label for curve in curves])
    table.tick_params(axis="y", length=0, pad=14)
    for tick, curve in zip(table.get_yticklabels(), curves, strict=True):
        tick.set_color(curve.colour)
    for side in ("left", "top", "right"):
        table.spines[side].set_visible(False)
    table.set_title(label, loc="left", fontsize="medium", weight="bold")
    for y, curve in zip(rows, curves, strict=True):
        for month in months:
            count = curve.at_risk.get(f"{month:g}")
            if count is not None:
                table.text(month, y, str(count), ha="center", va="center", color=curve.colour)


# --- the figures of an analytics snapshot -------------------------------------------------------


def survival_figure(
    output: Mapping[str, Any], endpoint: str, *, labels: Mapping[str, str], texts: Mapping[str, str]
) -> str:
    """PFS or OS by arm. `labels`: arm -> display name; `texts`: title, x, y, at_risk."""
    block = output["survival"][endpoint]
    curves = [
        Curve(labels[arm], block[arm]["curve"], block[arm]["at_risk"], ARM_COLOURS[arm])
        for arm in ARM_COLOURS
        if arm in block
    ]
    return km_svg(
        curves,
        title=texts["title"],
        x_label=texts["x"],
        y_label=texts["y"],
        at_risk_label=texts["at_risk"],
    )


def simon_makuch_figure(
    output: Mapping[str, Any],
    kind: str,
    group: str,
    *,
    labels: Mapping[str, str],
    texts: Mapping[str, str],
) -> str:
    """PFS by current transplant status (Simon-Makuch) for one arm or pooled."""
    block = output["transplant"][kind][group]["simon_makuch"]
    curves = [
        Curve(
            labels[state],
            block[state],
            block["at_risk"][state],
            STATE_COLOURS[state],
            censoring_ticks=False,
        )
        for state in STATE_COLOURS
        if block.get(state)
    ]
    return km_svg(
        curves,
        title=texts["title"],
        x_label=texts["x"],
        y_label=texts["y"],
        at_risk_label=texts["at_risk"],
    )


def grade_distribution_svg(
    distribution: Mapping[str, Mapping[str, int]],
    *,
    labels: Mapping[str, str],
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Percentage of evaluable treatments at each CRS grade, arms side by side."""
    grades = [str(grade) for grade in range(6)]
    with rc_context(STYLE):
        figure = Figure(figsize=(6.2, 2.8), layout="constrained")
        plot = figure.add_subplot()
        width = 0.38
        for offset, arm in enumerate(ARM_COLOURS):
            counts = distribution.get(arm, {})
            total = sum(counts.get(g, 0) for g in grades)
            shares = [100 * counts.get(g, 0) / total if total else 0 for g in grades]
            positions = [i + (offset - 0.5) * width for i in range(len(grades))]
            bars = plot.bar(
                positions,
                shares,
                width,
                color=ARM_COLOURS[arm],
                label=f"{labels[arm]} (N = {total})",
            )
            for bar, grade in zip(bars, grades, strict=True):
                if counts.get(grade, 0):
                    plot.annotate(
                        str(counts[grade]),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        plot.set_xticks(range(len(grades)), grades)
        plot.set(title=title, xlabel=x_label, ylabel=y_label)
        plot.legend(frameon=False, fontsize=8)
        return _svg(figure)


# --- the catalogue: each figure's name, drawn in the active language --------------------------

Draw = Callable[[Mapping[str, Any]], str]


def _step_at(curve: Sequence[Mapping[str, Any]], times: Sequence[float]) -> list[float]:
    """A step function {"t", "f"} (right-continuous, 0 before its first step) at `times`."""
    values, i, current = [], 0, 0.0
    for t in times:
        while i < len(curve) and curve[i]["t"] <= t:
            current = float(curve[i]["f"])
            i += 1
        values.append(current)
    return values


def competing_risks_svg(
    block: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    causes: Mapping[str, str],
    remainder: str,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Per arm, where the patients went: the cumulative incidence of relapse, non-relapse
    mortality stacked on it, and above them the progression-free (1 - both, PFS)."""
    colours = {"relapse": "#b45309", "nrm": "#6b21a8"}
    arms = [arm for arm in ARM_COLOURS if arm in block["relapse"]]
    with rc_context(STYLE):
        figure = Figure(figsize=(7.0, 3.2), layout="constrained")
        plots = figure.subplots(1, len(arms), sharey=True, squeeze=False)[0]
        for plot, arm in zip(plots, arms, strict=True):
            curves = {cause: block[cause][arm]["curve"] for cause in colours}
            times = sorted({0.0, *(float(p["t"]) for c in curves.values() for p in c)})
            relapse = _step_at(curves["relapse"], times)
            nrm = _step_at(curves["nrm"], times)
            both = [a + b for a, b in zip(relapse, nrm, strict=True)]
            plot.fill_between(times, 0, relapse, step="post", color=colours["relapse"],
                              alpha=0.75, lw=0, label=causes["relapse"])  # fmt: skip
            plot.fill_between(times, relapse, both, step="post", color=colours["nrm"],
                              alpha=0.6, lw=0, label=causes["nrm"])  # fmt: skip
            plot.fill_between(times, both, 1, step="post", color="#d1d5db", alpha=0.5, lw=0,
                              label=remainder)  # fmt: skip
            plot.set(title=labels[arm], xlabel=x_label, ylim=(0, 1), xlim=(0, times[-1] or 1))
            plot.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        plots[0].set_ylabel(y_label)
        plots[-1].legend(loc="upper right", frameon=False, fontsize=7)
        figure.suptitle(title)
        return _svg(figure)


def balance_svg(
    rows: Sequence[Mapping[str, Any]],
    *,
    names: Mapping[str, str],
    levels: Mapping[str, str],
    before: str,
    after: str,
    title: str,
    x_label: str,
) -> str:
    """A Love plot: each covariate level's standardised mean difference before (open) and
    after (filled) weighting, with the ±0.1 lines."""
    labels = [
        f"{names.get(r['covariate'], r['covariate'])}"
        + (f": {levels.get(r['level'], r['level'])}" if r.get("level") else "")
        for r in rows
    ]
    with rc_context(STYLE):
        figure = Figure(figsize=(6.2, 1.2 + 0.22 * max(len(rows), 1)), layout="constrained")
        plot = figure.add_subplot()
        positions = list(range(len(rows)))[::-1]
        plot.scatter([r["smd_before"] for r in rows], positions, facecolors="none",
                     edgecolors="#374151", label=before)  # fmt: skip
        plot.scatter([r["smd_after"] for r in rows], positions, color="#0b6fa4", label=after)
        for line in (-0.1, 0.1):
            plot.axvline(line, color="#9ca3af", ls="--", lw=0.8)
        plot.axvline(0, color="#374151", lw=0.8)
        plot.set_yticks(positions, labels)
        plot.set(title=title, xlabel=x_label)
        plot.legend(frameon=False, fontsize=7, loc="lower right")
        return _svg(figure)


def arm_labels() -> dict[str, str]:
    return {"blinatumomab": _("Blinatumomab"), "car_t": _("CAR-T")}


def _texts(title: str, y: str) -> dict[str, str]:
    return {"title": title, "x": _("Months since day 0"), "y": y, "at_risk": _("Number at risk")}


def _survival(endpoint: str) -> Draw:
    def draw(output: Mapping[str, Any]) -> str:
        title = _("Progression-free survival") if endpoint == "pfs" else _("Overall survival")
        y = _("Progression-free") if endpoint == "pfs" else _("Alive")
        return survival_figure(output, endpoint, labels=arm_labels(), texts=_texts(title, y))

    return draw


def _simon_makuch(kind: str, group: str) -> Draw:
    def draw(output: Mapping[str, Any]) -> str:
        transplant = _("UCBT") if kind == "ucbt" else _("allogeneic HSCT")
        who = arm_labels().get(group, _("both arms"))
        labels = {
            "not_transplanted": _("Not (yet) transplanted"),
            "transplanted": _("After %(transplant)s") % {"transplant": transplant},
        }
        title = _("PFS by current %(transplant)s status (Simon-Makuch), %(who)s") % {
            "transplant": transplant,
            "who": who,
        }
        return simon_makuch_figure(
            output, kind, group, labels=labels, texts=_texts(title, _("Progression-free"))
        )

    return draw


def _crs_grades(output: Mapping[str, Any]) -> str:
    return grade_distribution_svg(
        output["crs"]["grade_distribution"],
        labels=arm_labels(),
        title=_("CRS grade (ASTCT 2019 where derived)"),
        x_label=_("Grade"),
        # xgettext:no-python-format
        y_label=_("% of CRS-evaluable"),
    )


def _competing_risks(output: Mapping[str, Any]) -> str:
    return competing_risks_svg(
        output["competing_risks"],
        labels=arm_labels(),
        causes={"relapse": _("Relapse or progression"), "nrm": _("Non-relapse mortality")},
        remainder=_("Alive without progression"),
        title=_("Where the patients went: cumulative incidence of relapse and NRM"),
        x_label=_("Months since day 0"),
        y_label=_("Patients"),
    )


def _balance(output: Mapping[str, Any]) -> str:
    return balance_svg(
        output["adjusted"]["propensity"].get("balance") or [],
        names=covariate_names(),
        levels=level_names(),
        before=_("Before weighting"),
        after=_("After weighting"),
        title=_("Balance of the arms (standardised mean differences)"),
        x_label=_("SMD, CAR-T minus blinatumomab"),
    )


TRANSPLANT_KINDS = ("any_hsct", "ucbt")
TRANSPLANT_GROUPS = ("blinatumomab", "car_t", "pooled")
FIGURES: dict[str, Draw] = {
    "pfs": _survival("pfs"),
    "os": _survival("os"),
    "crs-grades": _crs_grades,
    "competing-risks": _competing_risks,
    "balance": _balance,
    **{
        f"sm-{kind}-{group}": _simon_makuch(kind, group)
        for kind in TRANSPLANT_KINDS
        for group in TRANSPLANT_GROUPS
    },
}
# Figures of blocks that snapshots computed before them lack (SAP 12-14).
NEEDS = {"competing-risks": "competing_risks", "balance": "adjusted"}


def drawable(name: str, output: Mapping[str, Any]) -> bool:
    """Whether a snapshot's output has what figure `name` shows."""
    return name in FIGURES and NEEDS.get(name, "survival") in output


# The figures the pages and the report show: drawn in every language as soon as a snapshot is
# complete (the others are drawn the first time they are asked for).
SHOWN = (
    "pfs",
    "os",
    "crs-grades",
    "sm-ucbt-blinatumomab",
    "sm-ucbt-car_t",
    "sm-ucbt-pooled",
    "competing-risks",
    "balance",
)


# --- drawing, remembered ----------------------------------------------------------------------
# A figure is a pure function of the blocks of the output it reads and of the language, and the
# same input gives the same bytes; drawing one takes about a second (text layout in two fonts).
# Snapshots of unchanged data (another scope with the same patients, a recomputation after an
# edit that did not touch the curves) draw the same figures again, so a process keeps the last
# ones it drew, keyed by a digest of exactly what they read.
DRAWN_INPUTS = ("survival", "transplant", "crs", "competing_risks", "adjusted")
REMEMBERED = 256  # about 50 KB each
_remembered: OrderedDict[tuple[str, str, str], str] = OrderedDict()
_remembered_lock = threading.Lock()


def input_digest(output: Mapping[str, Any]) -> str:
    drawn = {block: output.get(block) for block in DRAWN_INPUTS}
    text = json.dumps(drawn, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def draw(name: str, output: Mapping[str, Any]) -> str:
    """The SVG of figure `name` of a snapshot output in the active language."""
    key = (name, get_language() or "", input_digest(output))
    with _remembered_lock:
        if key in _remembered:
            _remembered.move_to_end(key)
            return _remembered[key]
    svg = FIGURES[name](output)
    with _remembered_lock:
        _remembered[key] = svg
        while len(_remembered) > REMEMBERED:
            _remembered.popitem(last=False)
    return svg
