"""The report's own chart: CRS grade distribution per arm, as SVG."""

from __future__ import annotations

import io
from collections.abc import Mapping

from matplotlib import rc_context
from matplotlib.figure import Figure

from analytics.figures import ARM_COLOURS, STYLE

GRADES = ["0", "1", "2", "3", "4", "5"]


def grade_distribution_svg(
    distribution: Mapping[str, Mapping[str, int]],
    *,
    labels: Mapping[str, str],
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Percentage of evaluable treatments at each grade, arms side by side."""
    with rc_context(STYLE):
        figure = Figure(figsize=(6.2, 2.8))
        plot = figure.add_subplot()
        width = 0.38
        for offset, arm in enumerate(ARM_COLOURS):
            counts = distribution.get(arm, {})
            total = sum(counts.get(g, 0) for g in GRADES)
            shares = [100 * counts.get(g, 0) / total if total else 0 for g in GRADES]
            positions = [i + (offset - 0.5) * width for i in range(len(GRADES))]
            bars = plot.bar(
                positions,
                shares,
                width,
                color=ARM_COLOURS[arm],
                label=f"{labels[arm]} (N = {total})",
            )
            for bar, grade in zip(bars, GRADES, strict=True):
                if counts.get(grade, 0):
                    plot.annotate(
                        str(counts[grade]),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        plot.set_xticks(range(len(GRADES)), GRADES)
        plot.set_xlabel(x_label)
        plot.set_ylabel(y_label)
        plot.set_title(title, fontsize=10)
        plot.spines[["top", "right"]].set_visible(False)
        plot.legend(frameon=False, fontsize=8)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
