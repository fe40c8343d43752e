"""`make bench` (issue #8): the registry at 1,000, 10,000 and 100,000 patients on PostgreSQL.

    python bench/run.py [--sizes "1000 10000 100000"] [--repeats 3] [--reseed]

Per size, its own database immunoreg_bench_<N> (seeded once with `seed_demo --patients N` and
kept; --reseed starts again): nightly analytics (whole registry and one site: wall time, peak
memory, frames vs statistics), the same statistics in R's survival package on the same frame
(ratio ImmunoReg / R), page latency under load against gunicorn with production settings (a
second process, bench/load.py), the worklist right after a save at the site ("a save, then
the worklist"), the monthly PDF, an import of 10,000 rows (into a fresh
database) and an export of every patient. Summaries go to bench/results/*.json and the table
between the bench markers of docs/PERFORMANCE.md. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from web_command import web_command  # docker/web.sh's command line

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The bench's own environment (BENCH_VENV, `make bench` makes it): the app on a Python built as
# the production image's is, profile-guided and link-time optimised (docs/PERFORMANCE.md,
# "Which Python"); by default the project's .venv.
VENV = ROOT / os.environ.get("BENCH_VENV", ".venv")
PY = str(VENV / "bin" / "python")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAq"]
PORT = int(os.environ.get("BENCH_PORT", "8011"))
TODAY = "2024-10-31"  # the synthetic cohort's data cut-off (registry.demo.CUTOFF)
SITE = "AHP"
TARGETS = {
    "nightly_total_s": 30,
    "frames_s": 5,
    "stats_vs_r": 2,
    "patient_list_p95_ms": 150,
    "patient_page_p95_ms": 150,
    "worklist_p95_ms": 300,
    "crs_save_p95_ms": 300,
    "save_worklist_p95_ms": 300,
    "pdf_s": 5,
    "import_10k_s": 60,
    "export_s": 20,
    "export_peak_mb": 400,
}
WORK = Path(tempfile.mkdtemp(prefix="immunoreg-bench-"))
# One key for the run: the load test's sessions are made by bench/worker.py (base settings) and
# read by gunicorn (production settings); the session hash is signed with it.
SECRET = "bench-" + secrets.token_urlsafe(40)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def env_for(db: str, *, production: bool = False) -> dict[str, str]:
    """The environment of a bench process on database `db`; `production`: the production
    settings plus the pages' floor (config.settings.bench), as gunicorn serves them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DATABASE_URL=f"{PG}/{db}",
        IMMUNOREG_TODAY=TODAY,
        LOG_LEVEL="WARNING",
        IMMUNOREG_VAR_DIR=str(WORK / "var"),
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DJANGO_SECRET_KEY=SECRET,
    )
    if production:
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.bench",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_SECURE_SSL_REDIRECT="0",
            IMMUNOREG_REQUIRE_2FA="0",
            DJANGO_PROXY_COUNT="0",
            DATABASE_CONN_MAX_AGE="60",
        )
    return env


def timed(cmd: list[str], env: dict[str, str], *, check: bool = True) -> dict:
    """Run under /usr/bin/time -v: wall seconds, peak RSS (MB), stdout's last line."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {
        "wall_s": round(wall, 3),
        "peak_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
        "last": lines[-1] if lines else "",
        "returncode": proc.returncode,
        "stdout": proc.stdout,
    }


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def sql(db: str, query: str) -> str:
    return subprocess.run(
        [*PSQL, "-d", db, "-c", query], capture_output=True, text=True
    ).stdout.strip()


def database(n: int, reseed: bool) -> tuple[str, dict]:
    db = f"immunoreg_bench_{n}"
    seed_file = RESULTS / f"seed-{n}.json"
    exists = sql("postgres", f"SELECT 1 FROM pg_database WHERE datname='{db}'") == "1"
    if exists and not reseed and sql(db, "SELECT count(*) FROM registry_patient") == str(n):
        log(f"{db}: {n} patients already seeded, reused (migrated to this code's schema)")
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v0"], env=env_for(db), cwd=ROOT, check=True
        )
        return db, json.loads(seed_file.read_text()) if seed_file.exists() else {"reused": True}
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", db], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", db], check=True)
    env = env_for(db)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    log(f"{db}: seed_demo --patients {n}")
    load_before = os.getloadavg()[0]  # the machine is shared: a seed's time depends on it
    run = timed([PY, "manage.py", "seed_demo", "--patients", str(n)], env)
    reported = re.search(r"in ([\d.]+) s\.", run["stdout"])
    seed = {
        "wall_s": run["wall_s"],
        "reported_s": float(reported.group(1)) if reported else None,
        "peak_mb": run["peak_mb"],
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    subprocess.run([*PSQL, "-d", db, "-c", "VACUUM ANALYZE"], check=True)
    seed_file.write_text(json.dumps(seed))
    return db, seed


def worker(db: str, *args: str, env: dict[str, str] | None = None) -> dict:
    run = timed([PY, "bench/worker.py", *args], env or env_for(db))
    return {**json.loads(run["last"]), "process_wall_s": run["wall_s"], "peak_mb": run["peak_mb"]}


def nightly(db: str, scope: str, repeats: int) -> dict:
    runs = [worker(db, "analytics", scope) for _ in range(repeats)]
    return {
        key: spread([r[key] for r in runs])
        for key in ("total_s", "frames_s", "stats_s", "peak_mb", "process_wall_s")
    } | {"patients": runs[0]["patients"]}


def frames_floor(db: str, repeats: int) -> dict:
    """analysis_frames of the whole registry against its floor (bench/worker.py frames_floor:
    the same SQL through a raw cursor into numpy), alternately in one process."""
    return worker(db, "frames_floor", "all", str(repeats))


def versus_r(db: str, repeats: int) -> dict:
    out = WORK / f"frame-{db}"
    py = worker(db, "stats_compare", "all", str(out), str(repeats))
    r_run = timed(["Rscript", "bench/r/survival.R", str(out), str(repeats)], dict(os.environ))
    r = json.loads(r_run["last"])
    # SAP 12-14 (issue #16): competing risks, Fine-Gray, IPTW and RMST with survival and cmprsk.
    r |= json.loads(
        timed(["Rscript", "bench/r/competing.R", str(out), str(repeats)], dict(os.environ))["last"]
    )
    return {
        "immunoreg": py,
        "r": r,
        "ratio": {
            k: round(py[k]["median_s"] / max(r[k]["median_s"], 1e-3), 2)
            for k in ("km_logrank_cox", "td_cox", "competing_risks", "fine_gray", "iptw", "rmst")
            if r.get(k, {}).get("median_s") is not None
        }
        | {"total": round(py["total_median_s"] / max(r["total_median_s"], 1e-3), 1)},
    }


def pdf(db: str, repeats: int) -> dict:
    """The monthly PDF of the whole registry, and its floor (plain pages of the same number
    rendered by WeasyPrint in the same process: bench/worker.py pdf)."""
    runs = [worker(db, "pdf", "all") for _ in range(repeats)]
    return {
        "total_s": spread([r["total_s"] for r in runs]),
        "peak_mb": spread([r["peak_mb"] for r in runs]),
        "floor_s": spread([r["floor_s"] for r in runs]),
        "pages": runs[-1]["pages"],
    }


def export(db: str, repeats: int) -> dict:
    """The CSV export of every patient (bench/worker.py export: timed in its process, with
    the process's peak memory) and its floor (copy_out) on the same database."""
    runs = []
    for i in range(repeats):
        path = WORK / f"export-{db}-{i}.csv"
        runs.append(worker(db, "export", str(path)))
        rows = sum(1 for _ in path.open(encoding="utf-8")) - 1
        path.unlink()
    tables = worker(db, "export_tables")["tables"]
    floors = [copy_out(db, tables, WORK / f"copy-{db}") for _ in range(repeats)]
    return {
        "wall_s": spread([r["export_s"] for r in runs]),
        "process_wall_s": spread([r["process_wall_s"] for r in runs]),
        "peak_mb": spread([r["peak_mb"] for r in runs]),
        "rows": rows,
        "floor": {"tables": tables, "wall_s": spread(floors)},
    }


def copy_out(db: str, tables: list[str], folder: Path) -> float:
    """The export's floor: PostgreSQL `COPY table TO` (CSV with a header, into files, by psql)
    of every table the export reads, whole; the seconds it took."""
    folder.mkdir(parents=True, exist_ok=True)
    script = "".join(
        f"\\copy {table} TO '{folder / table}.csv' (FORMAT csv, HEADER)\n" for table in tables
    )
    started = time.perf_counter()
    subprocess.run([*PSQL, "-d", db, "-v", "ON_ERROR_STOP=1"], input=script, text=True, check=True)
    took = time.perf_counter() - started
    shutil.rmtree(folder)
    return took


def copy_in_floor(imported: str, template: str, repeats: int) -> dict:
    """The import's floor: the rows the import wrote (every table empty in the migrated template
    and not after the import: the records, their history, the audit) dumped by `pg_dump
    --data-only` (COPY statements in dependency order) and loaded by psql, timed, into fresh
    copies of the template: PostgreSQL `COPY ... FROM` of the same rows into the same tables."""

    def with_rows(db: str) -> set[str]:
        tables = sql(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
        counts = sql(
            db,
            " UNION ALL ".join(
                f"SELECT '{table}', (SELECT 1 FROM \"{table}\" LIMIT 1)" for table in tables
            ),
        )
        return {line.split("|")[0] for line in counts.splitlines() if line.endswith("|1")}

    tables = sorted(with_rows(imported) - with_rows(template))
    dump = WORK / "import-floor.sql"
    subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--data-only", "-f", str(dump)]
        + [arg for table in tables for arg in ("-t", table)]
        + [imported],
        check=True,
    )
    runs = []
    for _ in range(repeats):
        target = "immunoreg_bench_copy_in"
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", target], check=True
        )
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", "-T", template, target], check=True
        )
        started = time.perf_counter()
        subprocess.run(
            [*PSQL, "-d", target, "-v", "ON_ERROR_STOP=1", "-f", str(dump)],
            check=True,
            capture_output=True,
        )
        runs.append(time.perf_counter() - started)
    rows = sum(int(sql(imported, f'SELECT count(*) FROM "{table}"') or 0) for table in tables)
    return {"tables": tables, "rows": rows, "wall_s": spread(runs)}


def import_10k(repeats: int, reseed: bool) -> dict:
    """10,000 rows (the export of the 10,000-patient registry) into a fresh migrated database."""
    source, _ = database(10000, reseed=False)
    file = WORK / "import-10000.csv"
    timed([PY, "manage.py", "export_cohort", str(file), "--format", "csv"], env_for(source))
    template = "immunoreg_bench_empty"
    if sql("postgres", f"SELECT 1 FROM pg_database WHERE datname='{template}'") != "1":
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", template], check=True)
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v0"],
            env=env_for(template),
            cwd=ROOT,
            check=True,
        )
    runs = []
    for _ in range(repeats):
        target = "immunoreg_bench_import"
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", target], check=True
        )
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", "-T", template, target], check=True
        )
        # The cohort file alone, as the committed figures measure it: export_cohort also
        # writes its laboratory file beside it, which import_cohort would pick up.
        run = timed(
            [PY, "manage.py", "import_cohort", str(file), "--create-sites", "--no-labs"],
            env_for(target),
            check=False,
        )
        imported = sql(target, "SELECT count(*) FROM registry_patient")
        runs.append(run | {"imported": int(imported or 0)})
    floor = copy_in_floor("immunoreg_bench_import", template, repeats)
    return {
        "floor": floor,
        "rows": sum(1 for _ in file.open(encoding="utf-8")) - 1,
        "wall_s": spread([r["wall_s"] for r in runs]),
        "peak_mb": spread([r["peak_mb"] for r in runs]),
        "imported": runs[-1]["imported"],
        "returncode": runs[-1]["returncode"],
        "output_tail": runs[-1]["stdout"][-300:],
    }


def cpu_sets() -> tuple[str, str] | None:
    """The cores of the server side (gunicorn and PostgreSQL) and of the load generator:
    BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (taskset lists), by default the last core for the load
    and the others for the server; None (nothing pinned) on a single core or with
    BENCH_PIN=0."""
    cores = os.sched_getaffinity(0)
    if os.environ.get("BENCH_PIN", "1") == "0" or len(cores) < 2:
        return None
    last = max(cores)
    server = os.environ.get("BENCH_SERVER_CPUS") or ",".join(str(c) for c in sorted(cores - {last}))
    return server, os.environ.get("BENCH_LOAD_CPUS") or str(last)


def cores_in(cpus: str) -> int:
    """How many cores a taskset list names ("0", "0-2", "0,2")."""
    count = 0
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


@contextlib.contextmanager
def postgres_on(cpus: str | None):
    """PostgreSQL's processes (the postmaster, whose new backends inherit it, and the running
    ones) on these cores while the load test runs, then back on every core."""
    if cpus is None:
        yield
        return
    pids = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout
    every = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))

    def pin(to: str) -> None:
        for pid in pids.split():
            subprocess.run(["taskset", "-a", "-p", "-c", to, pid], capture_output=True)

    pin(cpus)
    try:
        yield
    finally:
        pin(every)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], cpus: str | None):
    """A Celery worker with docker/worker.sh's command line on the bench's own Redis database
    (emptied first), on the server's cores: a save's outbox task (the patient's data-quality
    refresh) runs there, after the response, as in production, not inside the request."""
    subprocess.run(["redis-cli", "-u", env["CELERY_BROKER_URL"], "FLUSHDB"], check=True)
    worker_ = subprocess.Popen(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            *(str(VENV / "bin" / "celery"), "-A", "config", "worker", "--loglevel", "WARNING"),
            *("--concurrency", "1", "--without-gossip", "--without-mingle"),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(WORK / "celery.log", "w"),  # noqa: SIM115 (open as long as it runs)
    )
    try:
        until_idle(worker_.pid)
        yield
    finally:
        worker_.send_signal(signal.SIGTERM)
        worker_.wait(timeout=120)


def until_idle(pid: int, *, seconds: float = 60) -> None:
    """Wait until a process has started and stopped using the CPU (the Celery worker imports
    Django and the app for some seconds of the server core's time: measured, that would slow
    the first load scenarios, the pages' floor among them)."""
    clock = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / clock  # utime + stime

    deadline = time.monotonic() + seconds
    time.sleep(1)
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu()
        if now - before < 0.05:
            return
        before = now
    log(f"  process {pid} still busy after {seconds} s")


@contextlib.contextmanager
def served(db: str):
    """gunicorn with docker/web.sh's command line and production settings, on loopback, with a
    Celery worker on Redis (BENCH_BROKER, default Redis database 15), the cache they share
    (BENCH_CACHE, default Redis database 14, emptied first) holding every site's worklist for
    the day, computed as Celery beat does after midnight (bench/worker.py warm_worklists) once
    every patient's data-quality queries are refreshed as the night does (refresh_queries), and
    the load test's setup (sessions of the AHP nurse, patients and CRS episodes to ask for).
    Yields the setup file and the warm-up's figures."""
    env = env_for(db, production=True) | {
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/15"),
        "CACHE_URL": os.environ.get("BENCH_CACHE", "redis://127.0.0.1:6379/14"),
    }
    subprocess.run(["redis-cli", "-u", env["CACHE_URL"], "FLUSHDB"], check=True)
    subprocess.run(
        [PY, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, cwd=ROOT, check=True
    )
    pinned = cpu_sets()
    server = subprocess.Popen(
        [
            *(["taskset", "-c", pinned[0]] if pinned else []),
            *web_command(f"127.0.0.1:{PORT}", env, program=str(VENV / "bin" / "gunicorn")),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(WORK / "gunicorn.log", "w"),  # noqa: SIM115 (open as long as gunicorn runs)
    )
    try:
        setup = WORK / f"setup-{db}.json"
        setup.write_text(json.dumps(worker(db, "load_setup", "nurse", "32")))
        refreshed = worker(db, "refresh_queries", env=env)
        log(f"  data-quality queries refreshed as the night does: {refreshed}")
        # As autovacuum keeps a production database (a machine may run PostgreSQL without it):
        # the dead rows of earlier runs' saves gone, the planner's statistics up to date.
        sql(db, "VACUUM (ANALYZE)")
        warmed = worker(db, "warm_worklists", env=env) | {"queries_refreshed": refreshed}
        log(f"  worklists warmed: {warmed}")
        for _ in range(50):
            if (
                subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PORT}/healthz"]
                ).returncode
                == 0
            ):
                break
            time.sleep(0.3)
        with (
            postgres_on(pinned[0] if pinned else None),
            celery_worker(env, pinned[0] if pinned else None),
        ):
            yield setup, warmed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def load_scenarios(setup: Path, plan: list[tuple[str, int, int]]) -> dict:
    """Each (scenario, clients, requests per client) of the plan, after a warm-up of its
    scenario (every worker process imports and connects before it is measured); the load
    generator on its own cores when the machine has several (cpu_sets), and each result with
    its throughput per server core."""
    results = {}
    warmed = set()
    pinned = cpu_sets()
    on_load_cores = ["taskset", "-c", pinned[1]] if pinned else []
    server_cores = cores_in(pinned[0]) if pinned else os.cpu_count()
    for scenario, clients, requests in plan:
        if scenario not in warmed:
            subprocess.run(
                [
                    *on_load_cores,
                    *(PY, "bench/load.py", f"127.0.0.1:{PORT}", str(setup), scenario, "6", "2"),
                ],
                cwd=ROOT,
                capture_output=True,
            )
            warmed.add(scenario)
        proc = subprocess.run(
            [
                *on_load_cores,
                PY,
                "bench/load.py",
                f"127.0.0.1:{PORT}",
                str(setup),
                scenario,
                str(clients),
                str(requests),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["rps_per_server_core"] = round(result["throughput_rps"] / server_cores, 1)
        result["pinning"] = {"server_cpus": pinned[0], "load_cpus": pinned[1]} if pinned else "none"
        results[f"{scenario}@{clients}"] = result
        log(f"  load {scenario} x{clients}: {results[f'{scenario}@{clients}']}")
    return results


def load(db: str, levels: list[int], per_client: dict[int, int], rounds: int = 5) -> dict:
    """Each page at each level of clients, and after the patient page `rounds` more rounds of
    it at 8 clients, each after the floor (patient_page_rounds): one p95 of 200 requests moves
    by a third between identical runs on a shared host (docs/PERFORMANCE.md); the rounds give
    its median and its spread, each beside the floor of its moment. They come before the CRS
    saves, whose data-quality refreshes keep the Celery worker busy on the server's core for a
    minute after them."""

    def plan(*scenarios: str) -> list[tuple[str, int, int]]:
        return [(scenario, c, per_client[c]) for scenario in scenarios for c in levels]

    with served(db) as (setup, warmed):
        results = load_scenarios(setup, plan("floor", "patient_list", "patient_page"))
        each = [
            load_scenarios(setup, [("floor", 8, per_client[8]), ("patient_page", 8, per_client[8])])
            for _ in range(rounds)
        ]
        results |= load_scenarios(setup, plan("worklist", "crs_save"))
    p95s = [r["patient_page@8"]["p95_ms"] for r in each]
    results["patient_page_rounds"] = {
        "rounds": [
            {
                "patient_page_p95_ms": r["patient_page@8"]["p95_ms"],
                "patient_page_p50_ms": r["patient_page@8"]["p50_ms"],
                "floor_p95_ms": r["floor@8"]["p95_ms"],
                "errors": r["patient_page@8"]["errors"],
            }
            for r in each
        ],
        "p95_ms": spread(p95s),
    }
    return results | {"worklist_warm": warmed}


def save_worklist(db: str, plan: list[tuple[int, int]]) -> dict:
    """ "A save, then the worklist" (issue #12): each client saves a CRS episode at the nurse's
    site and then loads the worklist; the worklist's latency is measured, alone (1 client)
    and under load (8 clients, each saving). Then the same in one process (bench/worker.py
    save_worklist), with the worklist's CPU time, which other work on the machine does not
    inflate."""
    with served(db) as (setup, _warmed):
        results = load_scenarios(
            setup,
            [(scenario, c, n) for c, n in plan for scenario in ("floor", "save_worklist")],
        )
    return results | {"in_process": worker(db, "save_worklist", "nurse", "30")}


def python_build() -> str:
    """The bench interpreter's version and where it comes from (its base interpreter)."""
    return subprocess.run(
        [PY, "-c", "import platform, sys; print(platform.python_version(), sys._base_executable)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def machine() -> dict:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    pg = sql("postgres", "SHOW server_version")
    try:
        r = subprocess.run(
            ["Rscript", "-e", "cat(R.version.string, as.character(packageVersion('survival')))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except FileNotFoundError:  # a partial run (--skip r) on a machine without R
        r = "no R"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "postgresql": pg,
        "python": python_build(),
        "r": r,
        "kernel": platform.release(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000 10000 100000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip (their figures of the last run are kept): "
        "nightly,frames,site,r,load,save_worklist,icaht,pdf,import,export",
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(s) for s in args.sizes.split()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    log(f"machine: {info}")
    for n in sizes:
        started = time.perf_counter()
        db, seed = database(n, args.reseed)
        result: dict = {
            "patients": n,
            "machine": info,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "repeats": args.repeats,
            "seed": seed,
        }
        steps = [
            ("nightly", lambda db=db: nightly(db, "all", args.repeats)),
            ("frames", lambda db=db: frames_floor(db, args.repeats)),
            ("site", lambda db=db: nightly(db, SITE, args.repeats)),
            ("r", lambda db=db: versus_r(db, args.repeats)),
            ("pdf", lambda db=db: pdf(db, args.repeats)),
            ("export", lambda db=db: export(db, args.repeats)),
            ("load", lambda db=db: load(db, [8, 32], {8: 25, 32: 10})),
            ("save_worklist", lambda db=db: save_worklist(db, [(1, 40), (8, 10)])),
            ("icaht", lambda db=db: worker(db, "icaht", "20")),
        ]
        if n == max(sizes) or len(sizes) == 1:
            steps.append(("import", lambda: import_10k(max(1, args.repeats - 1), args.reseed)))
        previous_file = RESULTS / f"bench-{n}.json"
        previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
        for name, step in steps:
            if name in skip:
                # A partial run keeps the figures of the parts it skips, saying from when.
                if name in previous:
                    result[name] = previous[name]
                    kept = previous.get("kept_from", {}).get(name, previous.get("date"))
                    result.setdefault("kept_from", {})[name] = kept
                continue
            log(f"{n}: {name}")
            try:
                result[name] = step()
            except Exception as error:
                result[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            log(f"{n}: {name} -> {json.dumps(result[name])[:600]}")
        result["bench_wall_s"] = round(time.perf_counter() - started, 1)
        (RESULTS / f"bench-{n}.json").write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(WORK, ignore_errors=True)
    subprocess.run([PY, "bench/report.py"], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
