"""Writes the results table (bench/results/bench-*.json) between the bench markers of
docs/PERFORMANCE.md, and bench/results/summary.json: each figure, its target, met or not, and
how it grows from one size to the next."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def dig(data, *path):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


FIGURES = [  # name, path in bench-N.json, unit, target, lower is better
    ("seed_demo (reported)", ("seed", "reported_s"), "s", None),
    ("nightly, whole registry: total", ("nightly", "total_s", "median"), "s", 30),
    ("nightly, whole registry: frame extraction", ("nightly", "frames_s", "median"), "s", 5),
    ("nightly, whole registry: statistics", ("nightly", "stats_s", "median"), "s", None),
    ("nightly, whole registry: peak memory", ("nightly", "peak_mb", "median"), "MB", None),
    ("nightly, one site (AHP): total", ("site", "total_s", "median"), "s", 30),
    ("nightly, one site (AHP): frames", ("site", "frames_s", "median"), "s", 5),
    ("nightly, one site (AHP): peak memory", ("site", "peak_mb", "median"), "MB", None),
    ("statistics ImmunoReg / R (KM+log-rank+Cox, TD Cox)", ("r", "ratio", "total"), "x", 2),
    (
        "  KM + log-rank + Cox: ImmunoReg",
        ("r", "immunoreg", "km_logrank_cox", "median_s"),
        "s",
        None,
    ),
    ("  KM + log-rank + Cox: R", ("r", "r", "km_logrank_cox", "median_s"), "s", None),
    ("  time-dependent Cox: ImmunoReg", ("r", "immunoreg", "td_cox", "median_s"), "s", None),
    ("  time-dependent Cox: R", ("r", "r", "td_cox", "median_s"), "s", None),
]
for page, target in (
    ("patient_list", 150),
    ("patient_page", 150),
    ("worklist", 300),
    ("crs_save", 300),
):
    FIGURES.append((f"{page} p50 @8", ("load", f"{page}@8", "p50_ms"), "ms", None))
    FIGURES.append((f"{page} p95 @8", ("load", f"{page}@8", "p95_ms"), "ms", target))
    FIGURES.append((f"{page} p50 @32", ("load", f"{page}@32", "p50_ms"), "ms", None))
    FIGURES.append((f"{page} p95 @32", ("load", f"{page}@32", "p95_ms"), "ms", None))
# "A save, then the worklist" (issue #12): the worklist right after a save at the nurse's site,
# recomputed (the save gave the site a new data token), alone and with 8 clients each saving.
for clients in (1, 8):
    FIGURES.append(
        (
            f"worklist after a save p50 @{clients}",
            ("save_worklist", f"save_worklist@{clients}", "p50_ms"),
            "ms",
            None,
        )
    )
    FIGURES.append(
        (
            f"worklist after a save p95 @{clients}",
            ("save_worklist", f"save_worklist@{clients}", "p95_ms"),
            "ms",
            300,
        )
    )
FIGURES += [
    (
        "worklist after a save, one process: wall p95",
        ("save_worklist", "in_process", "after_save_wall", "p95_ms"),
        "ms",
        None,
    ),
    (
        "worklist after a save, one process: CPU p50",
        ("save_worklist", "in_process", "after_save_cpu", "p50_ms"),
        "ms",
        None,
    ),
    (
        "worklist after a save, one process: CPU p95",
        ("save_worklist", "in_process", "after_save_cpu", "p95_ms"),
        "ms",
        None,
    ),
    (
        "worklist cached (asked again), one process: CPU p50",
        ("save_worklist", "in_process", "cached_cpu", "p50_ms"),
        "ms",
        None,
    ),
    ("monthly PDF", ("pdf", "total_s", "median"), "s", 5),
    ("export of every patient (CSV)", ("export", "wall_s", "median"), "s", 20),
    ("export peak memory", ("export", "peak_mb", "median"), "MB", 400),
    ("import of 10,000 rows", ("import", "wall_s", "median"), "s", 60),
    ("import peak memory", ("import", "peak_mb", "median"), "MB", None),
]


def main() -> None:
    runs = {}
    for path in RESULTS.glob("bench-*.json"):
        data = json.loads(path.read_text())
        runs[data["patients"]] = data
    sizes = sorted(runs)
    if not sizes:
        return
    rows, summary = [], []
    header = (
        "| figure | "
        + " | ".join(f"{n:,}" for n in sizes)
        + " | growth | target | met at largest |"
    )
    rows += [header, "|" + "---|" * (len(sizes) + 4)]
    for name, path, unit, target in FIGURES:
        values = [dig(runs[n], *path) for n in sizes]
        if all(v is None for v in values):
            continue
        growth = " → ".join(
            f"×{b / a:.1f}" if a and b is not None else "–" for a, b in itertools.pairwise(values)
        )
        largest = next((v for v in reversed(values) if v is not None), None)
        met = (
            ""
            if target is None
            else ("yes" if largest is not None and largest <= target else "**no**")
        )
        cells = ["–" if v is None else f"{v:g} {unit}" for v in values]
        rows.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {growth} | "
            + ("" if target is None else f"≤ {target} {unit}")
            + f" | {met} |"
        )
        summary.append(
            {
                "figure": name,
                "unit": unit,
                "target": target,
                "values": dict(zip(map(str, sizes), values, strict=True)),
                "met": met == "yes" if target else None,
            }
        )
    load_errors = {
        n: {
            k: v.get("errors")
            for k, v in ((runs[n].get("load") or {}) | (runs[n].get("save_worklist") or {})).items()
            if isinstance(v, dict) and v.get("errors")
        }
        for n in sizes
    }
    machine = runs[sizes[-1]]["machine"]
    text = "\n".join(
        [
            f"Generated by `bench/report.py` from bench/results/bench-*.json (runs of {', '.join(runs[n]['date'] for n in sizes)}).",
            f"Machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gb']} GB, PostgreSQL "
            f"{machine['postgresql']}, Python {machine['python']}, {machine['r']} (R, survival), kernel {machine['kernel']}.",
            "Medians of the repeated runs (the JSON files keep min and max too).",
            *(
                f"At {n:,} patients, a partial rerun: {', '.join(kept)} kept from the run of "
                f"{' / '.join(sorted(set(kept.values())))}."
                for n in sizes
                if (kept := runs[n].get("kept_from"))
            ),
            "",
            *rows,
            "",
            f"Load-test requests that failed (status other than 200, or 302 after a save): {json.dumps(load_errors)}",
        ]
    )
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    doc = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    before, _, rest = doc.partition(BEGIN)
    _, _, after = rest.partition(END)
    DOC.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


if __name__ == "__main__":
    main()
