"""Bench tasks that run inside Django (one process per task, so that /usr/bin/time -v gives each
task's own peak memory). Called by bench/run.py: `python bench/worker.py TASK [ARGS]`; prints
one JSON object on its last stdout line. Needs DATABASE_URL and DJANGO_SETTINGS_MODULE."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()


def _site(code: str):
    from registry.models import Site

    return None if code == "all" else Site.objects.get(code=code)


def analytics(code: str) -> dict:
    """One nightly computation of one scope, as the nightly run does it (snapshot_compute)."""
    from analytics import services
    from analytics.models import Trigger

    started = time.perf_counter()
    snapshot = services.snapshot_compute(site=_site(code), trigger=Trigger.NIGHTLY)
    total = time.perf_counter() - started
    return {
        "total_s": round(total, 3),
        "frames_s": snapshot.timings.get("frames_s"),
        "stats_s": snapshot.timings.get("stats_s"),
        "patients": snapshot.row_counts.get("analysis_set"),
        "status": snapshot.status,
    }


def frames_floor(code: str, repeats: str) -> dict:
    """The frame extraction and its floor, alternately in this process: analysis_frames as the
    nightly run calls it, and the very SQL statements it sends (captured once) sent again
    through the raw psycopg cursor, every column read into a numpy array; no ORM, no pandas."""
    import numpy as np
    from django.db import connection

    from analytics.frames import analysis_frames

    site_ids = None if code == "all" else [_site(code).pk]
    statements: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        analysis_frames(site_ids=site_ids)

    def raw() -> int:
        values = 0
        with connection.connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                columns = [np.array(column) for column in zip(*rows, strict=True)]
                values += sum(len(column) for column in columns)
        return values

    frames, floor = [], []
    for _ in range(int(repeats)):
        started = time.perf_counter()
        analysis_frames(site_ids=site_ids)
        frames.append(time.perf_counter() - started)
        started = time.perf_counter()
        values = raw()
        floor.append(time.perf_counter() - started)
    return {
        "frames_s": round(statistics.median(frames), 4),
        "floor_s": round(statistics.median(floor), 4),
        "statements": len(statements),
        "values": values,
    }


def export(path: str) -> dict:
    """The CSV export of every patient, as `export_cohort FILE --format csv` makes it, timed in
    this process (without the start of a Python process that imports the stack)."""
    from registry import cohort_file
    from registry.management.commands.export_cohort import DEFAULT_USER, command_user

    user = command_user(None, default=DEFAULT_USER)
    started = time.perf_counter()
    result = cohort_file.export_cohort(Path(path), user=user, fmt="csv", deidentify=False)
    return {"export_s": round(time.perf_counter() - started, 3), "rows": result.log.rows}


def export_tables() -> dict:
    """The tables the cohort export reads (those named by the SQL of the first page of its
    rows and of its laboratory file's rows: `export_cohort` writes both)."""
    import itertools
    import re

    from django.db import connection

    from registry.cohort_file import export_rows
    from registry.cohort_file.export import export_lab_rows
    from registry.management.commands.export_cohort import DEFAULT_USER, command_user

    tables: set[str] = set()

    def capture(execute, sql, params, many, context):
        tables.update(re.findall(r'(?:FROM|JOIN) "(\w+)"', sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        user = command_user(None, default=DEFAULT_USER)
        list(itertools.islice(export_rows(user=user, deidentify=False), 1))
        list(itertools.islice(export_lab_rows(user=user, deidentify=False), 1))
    return {"tables": sorted(t for t in tables if not t.startswith(("auth_", "django_")))}


def stats_compare(code: str, out_dir: str, repeats: str) -> dict:
    """The statistics R's survival package also does (KM with CIs per arm, log-rank, Cox
    unadjusted and adjusted, for PFS and OS; time-dependent Cox for any HSCT and UCBT per arm
    and pooled), timed on the same frame that is written to out_dir for bench/r/survival.R."""
    import pandas as pd

    from analytics import comparison, services
    from analytics.frames import analysis_frames
    from analytics.stats import competing, survival, transplant

    frames = analysis_frames(site_ids=None if code == "all" else [_site(code).pk])
    t = frames.treatments
    frame = services.survival_frame(t)
    frame["arm"] = t["arm"]
    frame["any_hsct_day"] = pd_num(t["any_hsct_day"])
    frame["ucbt_day"] = pd_num(t["ucbt_day"])
    # SAP 12-14: the cause of each PFS event and the propensity model's covariates.
    frame["pfs_cause"] = t["pfs_cause"]
    for column in ("age", "sex", "ph_status", "prior_hsct"):
        frame[column] = comparison.propensity_frame(t)[column]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    frame.to_csv(Path(out_dir) / "frame.csv", index=False)

    def km_logrank_cox():
        for endpoint in services.ENDPOINTS:
            days, events = frame[f"{endpoint}_days"], frame[f"{endpoint}_event"]
            for arm in services.ARMS:
                survival.km_summary_days(days[t["arm"] == arm], events[t["arm"] == arm])
            survival.logrank(days, events, t["arm"])
            services.cox_model(frame, endpoint, ["car_t"])
            services.cox_model(frame, endpoint, ["car_t", "disease_burden", "relapse_group"])

    def td_cox():
        for column in ("any_hsct_day", "ucbt_day"):
            tf = services.transplant_frame(t, column)
            rows = transplant.counting_process(tf, covariates=("arm",))
            for arm in services.ARMS:
                transplant.time_dependent_cox(rows[rows["arm"] == arm])
            transplant.time_dependent_cox(rows, covariates=("arm",))

    months = survival.days_to_months(t["pfs_days"]).to_numpy()
    causes, arms = t["pfs_cause"].to_numpy(), t["arm"].to_numpy()

    def competing_risks():
        """CIF per arm and cause, Gray's test and cause-specific Cox per cause."""
        frame_c = pd.DataFrame({"time": months, "cause": causes, "car_t": frame["car_t"]})
        for cause in (1, 2):
            for arm in services.ARMS:
                competing.cif_summary(months[arms == arm], causes[arms == arm], cause)
            competing.gray_test(months, causes, arms, cause)
            competing.cause_specific_cox(frame_c, "time", "cause", ["car_t"], cause)

    def fine_gray():
        frame_c = pd.DataFrame({"time": months, "cause": causes, "car_t": frame["car_t"]})
        for cause in (1, 2):
            competing.fine_gray(frame_c, "time", "cause", ["car_t"], cause)

    parts = {}
    for name, fn in (
        ("km_logrank_cox", km_logrank_cox),
        ("td_cox", td_cox),
        ("competing_risks", competing_risks),
        ("fine_gray", fine_gray),
        ("iptw", lambda: comparison.adjusted(t)),
        ("rmst", lambda: comparison.restricted_mean(t)),
    ):
        runs = []
        for _ in range(int(repeats)):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        parts[name] = {
            "median_s": round(statistics.median(runs), 4),
            "runs_s": [round(r, 4) for r in runs],
        }
    # The total of the survival statistics as before (issue #8), the new ones apart.
    parts["total_median_s"] = round(
        parts["km_logrank_cox"]["median_s"] + parts["td_cox"]["median_s"], 4
    )
    parts["rows"] = len(frame)
    return parts


def pd_num(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def pdf(code: str) -> dict:
    """The monthly report of the scope, and its floor: WeasyPrint rendering plain pages of text
    of the same number and size (A4), in this process, right after."""
    import weasyprint

    from analytics.report.context import Month
    from analytics.report.services import report_pdf
    from registry.clock import today

    started = time.perf_counter()
    content, _ = report_pdf(site=_site(code), month=Month.containing(today()))
    total = time.perf_counter() - started
    pages = _pdf_pages(content)
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    plain = "".join(
        f'<section style="break-after: page"><h1>Page {n}</h1><p>{text}</p><p>{text}</p></section>'
        for n in range(1, pages + 1)
    )
    html = f"<html><head><style>@page {{ size: A4; margin: 2cm }}</style></head><body>{plain}</body></html>"
    started = time.perf_counter()
    floor = weasyprint.HTML(string=html).write_pdf()
    floor_s = time.perf_counter() - started
    assert _pdf_pages(floor) == pages, "the floor's page count differs from the report's"
    return {
        "total_s": round(total, 3),
        "floor_s": round(floor_s, 3),
        "pages": pages,
        "bytes": len(content),
    }


def _pdf_pages(content: bytes) -> int:
    import subprocess

    info = subprocess.run(["pdfinfo", "-"], input=content, capture_output=True, check=True)
    return int(
        next(
            line for line in info.stdout.decode().splitlines() if line.startswith("Pages:")
        ).split()[1]
    )


def load_setup(username: str, clients: str) -> dict:
    """Sessions for the load test (signed in as `username`, no login form: production cookies
    are Secure-only and the bench speaks plain HTTP on loopback), and the pages to request."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from registry.models import CrsEpisode, Patient, User
    from registry.selectors import patients_visible_to
    from registry.sessions import SessionStore

    user = User.objects.get(username=username)
    keys = []
    for _ in range(int(clients)):
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "registry.auth_backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        keys.append(store.session_key)
    visible = patients_visible_to(user=user)
    patient_ids = list(visible.order_by("?").values_list("pk", flat=True)[:2000])
    crs_ids = (
        list(
            CrsEpisode.objects.filter(treatment__patient__in=visible)
            .order_by("?")
            .values_list("pk", flat=True)[:2000]
        )
        if hasattr(CrsEpisode, "treatment")
        else []
    )
    return {
        "sessions": keys,
        "patients": patient_ids,
        "crs": crs_ids,
        "visible_patients": visible.count(),
        "all_patients": Patient.objects.count(),
    }


def save_worklist(username: str, repeats: str) -> dict:
    """ "A save, then the worklist" in one process, with nothing else of the bench running: a CRS
    episode of the user's sites saved through the services (its site gets a new data token),
    then the worklist page requested (Django's test client, the app's own cache): the wall time
    and the CPU time of this process for the worklist, and the same for the cached page asked
    for again. The CPU time (process_time: the app's Python, not PostgreSQL's) grows little
    when other work shares the machine; the wall time does."""
    from django.test import Client

    from registry import services
    from registry.models import CrsEpisode, User
    from registry.selectors import records_visible_to

    user = User.objects.get(username=username)
    episodes = list(
        records_visible_to(CrsEpisode, user=user).order_by("?").values_list("pk", flat=True)[:50]
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    client.get("/worklist/")  # imports, templates and connections, before anything is timed
    walls, cpus, cached, cached_cpus = [], [], [], []
    for n in range(int(repeats)):
        episode = CrsEpisode.objects.get(pk=episodes[n % len(episodes)])
        services.record_save(
            episode, user=user, reason="bench: re-saved unchanged", version=episode.version
        )
        wall, cpu = time.perf_counter(), time.process_time()
        assert client.get("/worklist/").status_code == 200
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        wall, cpu = time.perf_counter(), time.process_time()
        client.get("/worklist/")
        cached.append((time.perf_counter() - wall) * 1000)
        cached_cpus.append((time.process_time() - cpu) * 1000)

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {
            "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
            "max_ms": round(ordered[-1], 1),
        }

    return {
        "repeats": int(repeats),
        "after_save_wall": summary(walls),
        "after_save_cpu": summary(cpus),
        "cached_wall": summary(cached),
        "cached_cpu": summary(cached_cpus),
    }


def icaht(repeats: str) -> dict:
    """Issue #17's figures: ICAHT derived again for the whole registry from its laboratory
    series (services.icaht_derive_all, as `derive_icaht` runs it; nothing changes after a seed
    that derived them, so this is the reading and the grading), and saving a 30-row lab grid
    through services.lab_series_save (30 new days of a treatment of an alive patient, each
    save rolled back so that the registry stays as seeded)."""
    from datetime import timedelta

    from django.db import transaction

    from registry import services
    from registry.clock import today
    from registry.models import LabValue, Treatment, User

    started = time.perf_counter()
    read, changed = services.icaht_derive_all(user=None, reason="bench: derived again")
    derive_s = time.perf_counter() - started
    user = User.objects.get(username="nurse")
    treatments = list(
        Treatment.objects.filter(
            patient__death__isnull=True,
            patient__site__in=user.sites.all(),
            day0__lte=today() - timedelta(days=140),
        ).order_by("?")[: int(repeats) + 1]
    )
    walls = []
    for n, treatment in enumerate(treatments):
        rows = [
            {
                "date": treatment.day0 + timedelta(days=101 + day),
                "anc_per_ul": 300 + 40 * day,
                "platelets_10e9_l": 20 + day,
                "haemoglobin_g_dl": "9.1",
                "crp_mg_l": "12.5",
            }
            for day in range(30)
        ]
        with transaction.atomic():
            wall = time.perf_counter()
            services.lab_series_save(treatment=treatment, rows=rows, user=user, reason="")
            if n:  # the first one warms the imports and connections up
                walls.append((time.perf_counter() - wall) * 1000)
            transaction.set_rollback(True)
    ordered = sorted(walls)
    return {
        "derive_all_s": round(derive_s, 3),
        "treatments": read,
        "changed": changed,
        "lab_values": LabValue.objects.count(),
        "grid_save_30_rows": {
            "repeats": len(walls),
            "p50_ms": round(statistics.median(ordered), 1) if ordered else None,
            "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1)
            if ordered
            else None,
        },
    }


def refresh_queries() -> dict:
    """What Celery beat runs every night before the worklists are warmed (registry.tasks.
    refresh_quality_queries): every patient's data-quality queries opened and closed as of
    today. The seed skips it (registry.demo.seed_scaled), so a bench without it would measure
    a registry with no open query, which each run's saves then open, run after run."""
    from registry.tasks import refresh_quality_queries

    started = time.perf_counter()
    patients = refresh_quality_queries()
    return {"patients": patients, "wall_s": round(time.perf_counter() - started, 3)}


def warm_worklists() -> dict:
    """What Celery beat runs after midnight (registry.tasks.warm_worklists): every site's
    worklist for the day computed into the cache the web processes share (CACHE_URL)."""
    from registry.clock import today
    from registry.selectors import warm_worklists

    started = time.perf_counter()
    sites = warm_worklists(today=today())
    return {"sites": sites, "wall_s": round(time.perf_counter() - started, 3)}


if __name__ == "__main__":
    task, *args = sys.argv[1:]
    result = {
        "analytics": analytics,
        "stats_compare": stats_compare,
        "frames_floor": frames_floor,
        "export": export,
        "export_tables": export_tables,
        "pdf": pdf,
        "load_setup": load_setup,
        "save_worklist": save_worklist,
        "icaht": icaht,
        "warm_worklists": warm_worklists,
        "refresh_queries": refresh_queries,
    }[task](*args)
    print(json.dumps(result))
