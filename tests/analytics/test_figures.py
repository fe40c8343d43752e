"""Kaplan-Meier plots as SVG: text stays text, the numbers at risk sit beneath, same input same
bytes (the monthly PDF reuses them)."""

from __future__ import annotations

import re

from analytics.figures import Curve, km_svg
from analytics.stats.survival import km_summary

TEXTS = {
    "title": "Progression-free survival",
    "x_label": "Months since day 0",
    "y_label": "Progression-free",
    "at_risk_label": "Number at risk",
}


def curve(label: str, times: list[float], events: list[int], colour: str = "#0b6fa4") -> Curve:
    summary = km_summary(times, events)
    return Curve(label, summary["curve"], summary["at_risk"], colour)


def test_the_plot_is_an_svg_whose_words_and_numbers_at_risk_are_text():
    svg = km_svg([curve("CAR-T", [1, 4, 7, 13, 20, 26], [1, 0, 1, 1, 0, 0])], **TEXTS)
    assert svg.startswith("<svg")
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for word in ("Progression-free survival", "Number at risk", "Months since day 0", "CAR-T"):
        assert any(word in text for text in texts), word
    # at 0, 3, 6, 9, 12, 18, 24 months: 6, 5, 4, 3, 3, 2, 1 still at risk
    assert [t for t in texts if t.strip().isdigit()][-7:] == ["6", "5", "4", "3", "3", "2", "1"]


def test_each_arm_has_its_own_row_of_numbers_at_risk():
    svg = km_svg(
        [
            curve("Blinatumomab", [2, 30, 30], [0, 0, 0]),
            curve("CAR-T", [1, 2, 3, 4], [1, 1, 1, 1], "#c2410c"),
        ],
        **TEXTS,
    )
    assert svg.count(">Blinatumomab<") == 2  # the legend and the at-risk row
    assert re.search(r'fill="#c2410c"[^>]*>4<|>4</text>', svg)


def test_the_same_curves_give_the_same_bytes():
    curves = [curve("CAR-T", [1, 4, 7, 13], [1, 0, 1, 1])]
    assert km_svg(curves, **TEXTS) == km_svg(curves, **TEXTS)


def test_a_plot_without_patients_still_renders():
    empty = km_summary([], [])
    svg = km_svg([Curve("CAR-T", empty["curve"], empty["at_risk"], "#c2410c")], **TEXTS)
    assert "Number at risk" in svg and ">0<" in svg


def test_unicode_labels_stay_as_text_for_the_chinese_interface():
    svg = km_svg(
        [curve("嵌合抗原受体T细胞", [1, 5], [1, 0])], **{**TEXTS, "at_risk_label": "风险人数"}
    )
    assert "风险人数" in svg and "嵌合抗原受体T细胞" in svg


def test_a_figure_is_drawn_once_per_input_and_language_and_again_when_what_it_reads_changes(
    monkeypatch,
):
    from django.utils import translation

    from analytics import figures

    calls: list[str] = []
    monkeypatch.setitem(figures.FIGURES, "probe", lambda output: calls.append("drawn") or "<svg/>")
    output = {"survival": {"os": [1, 2]}, "crs": {}, "generated_at": "today"}
    with translation.override("en"):
        assert figures.draw("probe", output) == "<svg/>"
        figures.draw("probe", {**output, "generated_at": "tomorrow"})  # not read by figures
    assert len(calls) == 1
    with translation.override("zh-hans"):
        figures.draw("probe", output)
    with translation.override("en"):
        figures.draw("probe", {**output, "survival": {"os": [1, 3]}})
    assert len(calls) == 3
