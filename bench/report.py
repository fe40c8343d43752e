"""Writes the results (bench/results/bench-*.json) between the bench markers of
docs/PERFORMANCE.md, and bench/results/summary.json: each figure as a multiple of its floor
measured in the same run (the targets are ratios), then the absolute figures and how they grow
from one size to the next; and flags every ratio more than 20% worse than in the results
committed at --against (HEAD), printing it and listing it in the document.

    python bench/report.py [--against GIT_REF]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
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


# Each figure as a multiple of its floor, measured in the same run on the same machine (issue
# #15): name, the figure's path, the floor's path, the target (the ratio at most, or below
# for the statistics: "<" targets are strict), its unit. Absolute times do not travel from one
# machine (or week) to another; these ratios do.
RATIOS = [
    ("statistics / R: KM + log-rank + Cox", ("r", "immunoreg", "km_logrank_cox", "median_s"),
     ("r", "r", "km_logrank_cox", "median_s"), ("<", 1), "s"),
    ("statistics / R: time-dependent Cox", ("r", "immunoreg", "td_cox", "median_s"),
     ("r", "r", "td_cox", "median_s"), ("<", 1), "s"),
    ("statistics / R: all of the above", ("r", "immunoreg", "total_median_s"),
     ("r", "r", "total_median_s"), ("<", 1), "s"),
    ("statistics / R: competing risks (CIF, Gray, cause-specific Cox)",
     ("r", "immunoreg", "competing_risks", "median_s"), ("r", "r", "competing_risks", "median_s"),
     ("<", 1), "s"),
    ("statistics / R: Fine-Gray (crr, up to 10,000 rows)",
     ("r", "immunoreg", "fine_gray", "median_s"), ("r", "r", "fine_gray", "median_s"),
     ("<", 1), "s"),
    ("statistics / R: IPTW (propensity, weighted KM and Cox)",
     ("r", "immunoreg", "iptw", "median_s"), ("r", "r", "iptw", "median_s"), ("<", 1), "s"),
    ("statistics / R: RMST", ("r", "immunoreg", "rmst", "median_s"),
     ("r", "r", "rmst", "median_s"), ("<", 1), "s"),
    ("frame extraction / raw SQL into numpy", ("frames", "frames_s"), ("frames", "floor_s"),
     ("<=", 2), "s"),
    ("export (CSV) / COPY TO", ("export", "wall_s", "median"),
     ("export", "floor", "wall_s", "median"), ("<=", 3), "s"),
    ("import of 10,000 rows / COPY FROM", ("import", "wall_s", "median"),
     ("import", "floor", "wall_s", "median"), ("<=", 20), "s"),
    ("monthly PDF / plain pages", ("pdf", "total_s", "median"), ("pdf", "floor_s", "median"),
     None, "s"),
]  # fmt: skip
for page in ("patient_list", "patient_page", "worklist", "crs_save"):
    RATIOS.append(
        (f"{page} p95 @8 / floor p95 @8", ("load", f"{page}@8", "p95_ms"),
         ("load", "floor@8", "p95_ms"), ("<=", 3), "ms")
    )  # fmt: skip
for clients in (1, 8):
    RATIOS.append(
        (f"worklist after a save p95 @{clients} / floor p95 @{clients}",
         ("save_worklist", f"save_worklist@{clients}", "p95_ms"),
         ("save_worklist", f"floor@{clients}", "p95_ms"), ("<=", 5), "ms")
    )  # fmt: skip

FIGURES = [  # name, path in bench-N.json, unit, target (absolute; the ratios above come first)
    ("seed_demo (reported)", ("seed", "reported_s"), "s", None),
    ("Fine-Gray, both causes (ImmunoReg)", ("r", "immunoreg", "fine_gray", "median_s"), "s", 10),
    ("nightly, whole registry: total", ("nightly", "total_s", "median"), "s", 30),
    ("nightly, whole registry: frame extraction", ("nightly", "frames_s", "median"), "s", None),
    ("nightly, whole registry: statistics", ("nightly", "stats_s", "median"), "s", None),
    ("nightly, whole registry: peak memory", ("nightly", "peak_mb", "median"), "MB", None),
    ("nightly, one site (AHP): total", ("site", "total_s", "median"), "s", 30),
    ("nightly, one site (AHP): frames", ("site", "frames_s", "median"), "s", None),
    ("nightly, one site (AHP): peak memory", ("site", "peak_mb", "median"), "MB", None),
]
FIGURES += [
    ("patient_page p95 @8, median of the rounds",
     ("load", "patient_page_rounds", "p95_ms", "median"), "ms", 150),
    ("patient_page p95 @8, slowest round",
     ("load", "patient_page_rounds", "p95_ms", "max"), "ms", None),
]  # fmt: skip
for page in ("floor", "patient_list", "patient_page", "worklist", "crs_save"):
    for clients in (8, 32):
        for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
            FIGURES.append(
                (f"{page} {label} @{clients}", ("load", f"{page}@{clients}", key), "ms", None)
            )
        FIGURES.append(
            (f"{page} requests/s per server core @{clients}",
             ("load", f"{page}@{clients}", "rps_per_server_core"), "req/s", None)
        )  # fmt: skip
# "A save, then the worklist" (issue #12): the worklist right after a save at the nurse's site,
# recomputed (the save gave the site a new data token), alone (issue #12's 300 ms) and with 8
# clients each saving (where it queues behind the others' saves on the server's core: judged
# by its ratio to the floor).
for clients in (1, 8):
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
        FIGURES.append(
            (f"worklist after a save {label} @{clients}",
             ("save_worklist", f"save_worklist@{clients}", key), "ms",
             300 if label == "p95" and clients == 1 else None)
        )  # fmt: skip
FIGURES += [
    ("worklist after a save, one process: wall p95",
     ("save_worklist", "in_process", "after_save_wall", "p95_ms"), "ms", None),
    ("worklist after a save, one process: CPU p95",
     ("save_worklist", "in_process", "after_save_cpu", "p95_ms"), "ms", None),
    ("worklist cached (asked again), one process: CPU p50",
     ("save_worklist", "in_process", "cached_cpu", "p50_ms"), "ms", None),
    ("worklists of the day computed (every site, as beat runs it after midnight)",
     ("load", "worklist_warm", "wall_s"), "s", None),
    ("ICAHT derived again, whole registry", ("icaht", "derive_all_s"), "s", None),
    ("laboratory values", ("icaht", "lab_values"), "", None),
    ("lab grid of 30 rows saved: p95", ("icaht", "grid_save_30_rows", "p95_ms"), "ms", 300),
    ("monthly PDF", ("pdf", "total_s", "median"), "s", None),
    ("monthly PDF pages", ("pdf", "pages"), "", None),
    ("export of every patient (CSV)", ("export", "wall_s", "median"), "s", None),
    ("export peak memory", ("export", "peak_mb", "median"), "MB", 400),
    ("import of 10,000 rows", ("import", "wall_s", "median"), "s", None),
    ("import peak memory", ("import", "peak_mb", "median"), "MB", None),
]  # fmt: skip
REGRESSION = 1.2  # a ratio more than 20% above the last committed run's is flagged


def ratio_of(run: dict, figure: tuple, floor: tuple) -> float | None:
    value, base = dig(run, *figure), dig(run, *floor)
    if not isinstance(value, int | float) or not isinstance(base, int | float) or base <= 0:
        return None
    return value / base


def meets(ratio: float | None, target: tuple | None) -> bool | None:
    if target is None or ratio is None:
        return None
    comparison, bound = target
    return ratio < bound if comparison == "<" else ratio <= bound


def committed_runs(ref: str) -> dict[int, dict]:
    """The bench results as committed at `ref` (git), by size; {} where there are none."""
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", ref, "bench/results/"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    runs = {}
    for name in listing.stdout.split():
        if not re.fullmatch(r"bench/results/bench-\d+\.json", name):
            continue
        shown = subprocess.run(
            ["git", "show", f"{ref}:{name}"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode == 0:
            data = json.loads(shown.stdout)
            runs[data["patients"]] = data
    return runs


def regressions(runs: dict[int, dict], before: dict[int, dict]) -> list[dict]:
    """Every ratio that is more than 20% above the same ratio of the committed run."""
    found = []
    for n, run in runs.items():
        for name, figure, floor, _target, _unit in RATIOS:
            now = ratio_of(run, figure, floor)
            then = ratio_of(before.get(n, {}), figure, floor)
            if now is not None and then is not None and now > REGRESSION * then:
                found.append(
                    {"patients": n, "ratio": name, "before": round(then, 3), "now": round(now, 3)}
                )
    return found


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--against", default="HEAD", help="git ref of the results to compare with (HEAD)"
    )
    args = parser.parse_args()
    runs = {}
    for path in RESULTS.glob("bench-*.json"):
        data = json.loads(path.read_text())
        runs[data["patients"]] = data
    sizes = sorted(runs)
    if not sizes:
        return
    summary = []
    head = "| figure | " + " | ".join(f"{n:,}" for n in sizes)
    ratio_rows = [head + " | target | met at every size |", "|" + "---|" * (len(sizes) + 3)]
    for name, figure, floor, target, unit in RATIOS:
        ratios = [ratio_of(runs[n], figure, floor) for n in sizes]
        if all(r is None for r in ratios):
            continue
        cells = [
            "–"
            if r is None
            else f"{r:.2f}× ({_number(dig(runs[n], *figure))} / {_number(dig(runs[n], *floor))} {unit})"
            for n, r in zip(sizes, ratios, strict=True)
        ]
        met = [meets(r, target) for r in ratios]
        verdict = (
            "" if target is None else ("yes" if all(m is not False for m in met) else "**no**")
        )
        bound = "" if target is None else f"{target[0]} {target[1]}×"
        ratio_rows.append(f"| {name} | " + " | ".join(cells) + f" | {bound} | {verdict} |")
        summary.append(
            {
                "figure": name,
                "kind": "ratio",
                "target": None if target is None else f"{target[0]} {target[1]}",
                "values": {
                    str(n): None if r is None else round(r, 3)
                    for n, r in zip(sizes, ratios, strict=True)
                },
                "met": None if target is None else verdict == "yes",
            }
        )
    rows = [head + " | growth | target | met at largest |", "|" + "---|" * (len(sizes) + 4)]
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
        cells = ["–" if v is None else f"{v:g} {unit}".strip() for v in values]
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
    worse = regressions(runs, committed_runs(args.against))
    for item in worse:
        print(
            f"REGRESSION at {item['patients']:,} patients: {item['ratio']} "
            f"{item['before']}× -> {item['now']}× (more than {REGRESSION - 1:.0%} worse)"
        )
    load_errors = {
        n: {
            k: v.get("errors")
            for k, v in ((runs[n].get("load") or {}) | (runs[n].get("save_worklist") or {})).items()
            if isinstance(v, dict) and v.get("errors")
        }
        for n in sizes
    }
    pinning = next(
        (
            v["pinning"]
            for n in sizes
            for v in (runs[n].get("load") or {}).values()
            if isinstance(v, dict) and "pinning" in v
        ),
        None,
    )
    machine = runs[sizes[-1]]["machine"]
    text = "\n".join(
        [
            f"Generated by `bench/report.py` from bench/results/bench-*.json (runs of {', '.join(runs[n]['date'] for n in sizes)}).",
            f"Machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gb']} GB, PostgreSQL "
            f"{machine['postgresql']}, Python {machine['python']}, {machine['r']} (R, survival), kernel {machine['kernel']}.",
            "Medians of the repeated runs (the JSON files keep min and max too).",
            (
                f"Load tests: gunicorn and PostgreSQL pinned to cores {pinning['server_cpus']}, the load "
                f"generator to cores {pinning['load_cpus']} (taskset)."
                if isinstance(pinning, dict)
                else "Load tests: nothing pinned (one core, or BENCH_PIN=0)."
            ),
            *(
                f"At {n:,} patients, a partial rerun: {', '.join(kept)} kept from the run of "
                f"{' / '.join(sorted(set(kept.values())))}."
                for n in sizes
                if (kept := runs[n].get("kept_from"))
            ),
            "",
            "Each figure as a multiple of its floor, measured in the same run (figure / floor):",
            "",
            *ratio_rows,
            "",
            f"Ratios more than {REGRESSION - 1:.0%} worse than in the results committed at "
            f"`{args.against}`: "
            + (
                "; ".join(
                    f"{i['ratio']} at {i['patients']:,} ({i['before']}× → {i['now']}×)"
                    for i in worse
                )
                or "none"
            )
            + ".",
            "",
            "The absolute figures:",
            "",
            *rows,
            "",
            f"Load-test requests that failed (status other than 200, or 302 after a save): {json.dumps(load_errors)}",
        ]
    )
    (RESULTS / "summary.json").write_text(
        json.dumps({"figures": summary, "regressions": worse}, indent=1) + "\n"
    )
    doc = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    before, _, rest = doc.partition(BEGIN)
    _, _, after = rest.partition(END)
    DOC.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


if __name__ == "__main__":
    main()
