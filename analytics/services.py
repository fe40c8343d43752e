"""The analytics: SAP.md's output from the analysis frames, and the snapshots that keep it.

Two halves:
- `sap_output(frames, ...)`: the JSON of SAP.md section 10 (and the baseline table and data
  completeness of sections 2 and 8), from analytics.frames through analytics.stats. No
  database access.
- Snapshots (SAP.md section 9): claim one computation at a time, run it (frames, statistics,
  saving, each stage recorded), and finish it as complete, failed or skipped in one UPDATE, so
  a run that dies half-way never becomes the latest complete snapshot. The claim is held by a
  lease its worker renews while it computes (`Lease`); one whose lease ran out was interrupted
  and is closed as failed by the next claim or the watchdog, which computes its scope again
  (`computations_watch`): neither host names nor PIDs are trusted (containers reuse both).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from analytics import comparison, queue
from analytics.frames import (
    KNOWN_STATUS,
    RELAPSE_GROUPS,
    RESPONSE_WINDOW_DAYS,
    AnalysisFrames,
    analysis_frames,
)
from analytics.models import Snapshot, Stage, Status, Trigger
from analytics.snapshot_figures import figures_draw
from analytics.stats import proportions, survival, transplant
from analytics.stats.plain import finite_or_none
from registry.clock import today
from registry.domain.crs import SEVERE_FROM_GRADE
from registry.domain.followup import lost_to_follow_up
from registry.domain.icaht import SEVERE_FROM_GRADE as ICAHT_SEVERE_FROM_GRADE
from registry.domain.vocabulary import (
    Arm,
    DiseaseBurden,
    PhStatus,
    RelapseStatus,
    Role,
    Sex,
    YesNoUnknown,
)
from registry.models import Site, User
from registry.permissions import Action, can, user_site_ids

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ARMS: tuple[str, str] = (Arm.BLINATUMOMAB.value, Arm.CAR_T.value)
GRADES = range(6)
ICAHT_GRADES = range(5)
BURDENS = (DiseaseBurden.MRD_ONLY.value, DiseaseBurden.MORPHOLOGIC.value)
# The watchdog computes again a scope whose latest computation was interrupted, if that
# happened within this time (older ones: the nightly run did it since) and not this many times
# in a row (a computation that kills its worker every time is left for a person to look at).
RECOVER_WITHIN = timedelta(days=1)
RECOVER_AT_MOST = 3


@dataclass(frozen=True)
class Parameters:
    """The fixed conventions of SAP.md (section 10 "parameters")."""

    landmark_days: int = transplant.LANDMARK_DAYS
    alpha: float = 0.05
    days_per_month: float = survival.DAYS_PER_MONTH
    response_window_days: int = RESPONSE_WINDOW_DAYS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str], None]


def _no_progress(section: str) -> None:
    """Default progress callback: nothing to report to."""


# --- the output of SAP.md section 10 ----------------------------------------------------------


def sap_output(
    frames: AnalysisFrames,
    *,
    parameters: Parameters = Parameters(),
    as_of: date,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Every table of the SAP for one analysis set (provenance keys are added by the caller)."""
    t = frames.treatments
    output: dict[str, Any] = {
        "populations": populations(t),
        "baseline": baseline(t),
        "crs": toxicity(t, "crs"),
        "icans": toxicity(t, "icans"),
        "response": response(t),
    }
    progress("subgroups")
    output["subgroups"] = {
        "disease_burden": subgroups(t, "disease_burden", BURDENS),
        "relapse_group": subgroups(t, "relapse_group", RELAPSE_GROUPS),
    }
    progress("survival")
    output["survival"] = survival_block(t)
    progress("transplant")
    output["transplant"] = {
        "any_hsct": transplant_block(t, "any_hsct_day", parameters.landmark_days),
        "ucbt": transplant_block(t, "ucbt_day", parameters.landmark_days),
    }
    progress("competing risks")
    output["competing_risks"] = comparison.competing_risks(t)
    progress("adjusted comparison")
    output["adjusted"] = comparison.adjusted(t)
    output["rmst"] = comparison.restricted_mean(t)
    output["hematotoxicity"] = hematotoxicity(t)
    progress("completeness")
    output["completeness"] = completeness(t, frames.open_queries, as_of=as_of)
    return output


def _arm(t: pd.DataFrame, arm: str) -> pd.DataFrame:
    return t[t["arm"] == arm]


def _count(mask: pd.Series) -> int:
    return int(mask.fillna(False).astype(bool).sum())


def populations(t: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {
        arm: {
            "analysis": len(group),
            "crs_evaluable": _count(group["crs_status"].isin(KNOWN_STATUS)),
            "icans_evaluable": _count(group["icans_status"].isin(KNOWN_STATUS)),
            "response_evaluable": _count(group["response_evaluable"]),
        }
        for arm in ARMS
        for group in [_arm(t, arm)]
    }


def compare(t: pd.DataFrame, *, evaluable: pd.Series, outcome: pd.Series) -> dict[str, Any]:
    """RATE_CMP: n/N per arm over the evaluable rows, and Fisher's exact p."""
    counts = []
    for arm in ARMS:
        in_arm = evaluable & (t["arm"] == arm)
        counts += [_count(in_arm & outcome), _count(in_arm)]
    return proportions.rate_compare(*counts, arms=ARMS)


def two_by_two(t: pd.DataFrame, *, evaluable: pd.Series, outcome: pd.Series) -> list[list[int]]:
    """Rows: the arms (blinatumomab first); columns: with and without the outcome."""
    table = []
    for arm in ARMS:
        in_arm = evaluable & (t["arm"] == arm)
        table.append([_count(in_arm & outcome), _count(in_arm & ~outcome)])
    return table


def toxicity_flags(t: pd.DataFrame, prefix: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(evaluable, any grade, severe) for CRS or ICANS. A `yes` without a known grade counts as
    any grade; only a known grade >= 3 counts as severe."""
    evaluable = t[f"{prefix}_status"].isin(KNOWN_STATUS)
    grade = pd.to_numeric(t[f"{prefix}_grade"], errors="coerce")
    occurred = (t[f"{prefix}_status"] == YesNoUnknown.YES) & ~(grade == 0)
    severe = grade >= SEVERE_FROM_GRADE  # DOMAIN.md: severe CRS (and ICANS)
    return evaluable, occurred & evaluable, severe & evaluable


def toxicity(t: pd.DataFrame, prefix: str) -> dict[str, Any]:
    evaluable, occurred, severe = toxicity_flags(t, prefix)
    grade = pd.to_numeric(t[f"{prefix}_grade"], errors="coerce")
    distribution, unknown, sources = {}, {}, {}
    for arm in ARMS:
        in_arm = evaluable & (t["arm"] == arm)
        distribution[arm] = {str(g): _count(in_arm & (grade == g)) for g in GRADES}
        unknown[arm] = _count(in_arm & grade.isna())
        sources[arm] = {
            source: _count(in_arm & (t[f"{prefix}_grade_source"] == source))
            for source in ("derived", "recorded")
        }
    graded = evaluable & grade.notna()
    return {
        "any": compare(t, evaluable=evaluable, outcome=occurred),
        "severe": compare(t, evaluable=evaluable, outcome=severe),
        "grade_distribution": distribution,
        "grade_unknown": unknown,
        # DOMAIN.md: how many grades were the derived ASTCT grade, how many the recorded one.
        "grade_source": sources,
        "p_grades_mann_whitney": proportions.mann_whitney(
            grade[graded & (t["arm"] == ARMS[0])], grade[graded & (t["arm"] == ARMS[1])]
        ),
    }


def hematotoxicity(t: pd.DataFrame) -> dict[str, Any]:
    """SAP 15: early and late ICAHT per arm, the grades derived from the lab series (grade 0-4,
    or not gradable: too sparse a series, or none), and the severe rate (grade >= 3) over the
    gradable treatments, compared by Fisher's exact test; IVIG use and CAR persistence per arm
    (issue #17) the same way."""
    block = {}
    for phase in ("early", "late"):
        grade = pd.to_numeric(t[f"icaht_{phase}_grade"], errors="coerce")
        gradable = grade.notna()
        distribution = {}
        for arm in ARMS:
            in_arm = t["arm"] == arm
            distribution[arm] = {str(g): _count(in_arm & (grade == g)) for g in ICAHT_GRADES}
            distribution[arm]["not_gradable"] = _count(in_arm & ~gradable)
        block[f"icaht_{phase}"] = {
            "grade_distribution": distribution,
            "severe": compare(t, evaluable=gradable, outcome=grade >= ICAHT_SEVERE_FROM_GRADE),
        }
    everyone = pd.Series(True, index=t.index)
    persistence = t["car_persistence"]
    # Immunoglobulin replacement given (any course on or after day 0), over every treatment;
    # CAR T cells detected at any assessment, over the treatments assessed.
    block["ivig"] = compare(t, evaluable=everyone, outcome=t["ivig"].astype(bool))
    block["car_persistence"] = compare(
        t, evaluable=persistence.notna(), outcome=persistence.eq(True)
    )
    return block


def response(t: pd.DataFrame) -> dict[str, Any]:
    evaluable = t["response_evaluable"].astype(bool)
    everyone = pd.Series(True, index=t.index)
    cr, mrd_negative = t["cr"].astype(bool), t["mrd_negative_cr"].astype(bool)
    return {
        "cr": compare(t, evaluable=evaluable, outcome=cr),
        "mrd_negative_cr": compare(t, evaluable=evaluable, outcome=mrd_negative),
        "mrd_negative_cr_itt": compare(t, evaluable=everyone, outcome=mrd_negative),
        "cr_itt": compare(t, evaluable=everyone, outcome=cr),
        "best_response": {
            arm: {
                str(level): _count(evaluable & (t["arm"] == arm) & (t["best_response"] == level))
                for level in ("cr", "cri", "pr", "nr")
            }
            for arm in ARMS
        },
    }


def subgroups(t: pd.DataFrame, column: str, levels: Sequence[str]) -> dict[str, Any]:
    """CRS per arm within each level of one factor, and the CMH test across the levels."""
    evaluable, occurred, severe = toxicity_flags(t, "crs")
    block: dict[str, Any] = {}
    strata: dict[str, list[list[list[int]]]] = {"crs_any": [], "crs_severe": []}
    for level in levels:
        in_level = evaluable & (t[column] == level)
        block[level] = {
            "crs_any": compare(t, evaluable=in_level, outcome=occurred),
            "crs_severe": compare(t, evaluable=in_level, outcome=severe),
        }
        strata["crs_any"].append(two_by_two(t, evaluable=in_level, outcome=occurred))
        strata["crs_severe"].append(two_by_two(t, evaluable=in_level, outcome=severe))
    block["cmh"] = {
        name: {**proportions.cmh(tables), "odds_ratio_of": f"{ARMS[0]} vs {ARMS[1]}"}
        for name, tables in strata.items()
    }
    return block


# Baseline (SAP.md section 2) ------------------------------------------------------------------


def baseline(t: pd.DataFrame) -> dict[str, Any]:
    yes_no = t["prior_hsct"].map({True: "yes", False: "no"}).fillna("unknown")
    return {
        "n": {arm: len(_arm(t, arm)) for arm in ARMS},
        "age": continuous(t, t["age"]),
        "sex": categorical(t, t["sex"], [s.value for s in Sex]),
        "ph_status": categorical(t, t["ph_status"], [s.value for s in PhStatus]),
        "disease_burden": categorical(t, t["disease_burden"].fillna("unknown"), BURDENS),
        "bm_blast_pct": continuous(t, t["bm_blast_pct"]),
        "relapse_status": categorical(
            t, t["relapse_status"].fillna("unknown"), [s.value for s in RelapseStatus]
        ),
        "prior_hsct": categorical(t, yes_no, ["yes", "no"]),
    }


def continuous(t: pd.DataFrame, values: pd.Series) -> dict[str, Any]:
    """Median and IQR per arm, and the Mann-Whitney U p."""
    numbers = pd.to_numeric(values, errors="coerce")
    block: dict[str, Any] = {}
    for arm in ARMS:
        present = numbers[t["arm"] == arm].dropna()
        quartiles = present.quantile([0.25, 0.5, 0.75]) if len(present) else None
        block[arm] = {
            "n": len(present),
            "median": None if quartiles is None else finite_or_none(quartiles[0.5]),
            "iqr": [None, None]
            if quartiles is None
            else [finite_or_none(quartiles[0.25]), finite_or_none(quartiles[0.75])],
        }
    block["p"] = proportions.mann_whitney(
        numbers[t["arm"] == ARMS[0]], numbers[t["arm"] == ARMS[1]]
    )
    return block


def categorical(t: pd.DataFrame, values: pd.Series, levels: Sequence[str]) -> dict[str, Any]:
    """Counts per level and arm (others under "unknown"), and Fisher's or chi-square p over
    the known levels."""
    block: dict[str, Any] = {}
    for arm in ARMS:
        in_arm = values[t["arm"] == arm]
        counts = {level: _count(in_arm == level) for level in levels}
        counts["unknown"] = len(in_arm) - sum(counts.values())
        block[arm] = counts
    known = [level for level in levels if level != "unknown"]
    block["p"] = proportions.categorical_test(
        [[block[arm][level] for level in known] for arm in ARMS]
    )
    return block


# Survival (SAP.md section 6) -------------------------------------------------------------------

ENDPOINTS = ("pfs", "os")


def survival_frame(t: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "car_t": (t["arm"] == Arm.CAR_T).astype(int),
            "disease_burden": pd.Categorical(t["disease_burden"], categories=BURDENS),
            "relapse_group": pd.Categorical(t["relapse_group"], categories=RELAPSE_GROUPS),
        },
        index=t.index,
    )
    for endpoint in ENDPOINTS:
        frame[f"{endpoint}_days"] = t[f"{endpoint}_days"].astype(float)
        frame[f"{endpoint}_event"] = t[f"{endpoint}_event"].astype(int)
    return frame


def survival_block(t: pd.DataFrame) -> dict[str, Any]:
    frame = survival_frame(t)
    block: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        days, events = frame[f"{endpoint}_days"], frame[f"{endpoint}_event"]
        result: dict[str, Any] = {
            arm: survival.km_summary_days(days[t["arm"] == arm], events[t["arm"] == arm])
            for arm in ARMS
        }
        result["logrank"] = survival.logrank(days, events, t["arm"])
        result["cox"] = cox_model(frame, endpoint, ["car_t"])
        result["cox_adjusted"] = cox_model(
            frame, endpoint, ["car_t", "disease_burden", "relapse_group"]
        )
        result["cox"]["hr_of"] = result["cox_adjusted"]["hr_of"] = f"{ARMS[1]} vs {ARMS[0]}"
        block[endpoint] = result
    block["median_followup_months"] = {
        arm: survival.median_followup(
            survival.days_to_months(frame.loc[t["arm"] == arm, "os_days"]),
            frame.loc[t["arm"] == arm, "os_event"],
        )
        for arm in ARMS
    }
    return block


def cox_model(frame: pd.DataFrame, endpoint: str, covariates: list[str]) -> dict[str, Any]:
    """Cox model of the endpoint on the exposure (the first covariate), adjusted for the other
    covariates that vary among the patients with complete data (a constant adjusts nothing)."""
    duration, event = f"{endpoint}_days", f"{endpoint}_event"
    complete = survival.complete_columns(frame, [duration, event, *covariates])
    if complete[event].sum() == 0:
        return {**survival.cox_not_estimable("no events"), "covariates": covariates}
    used = covariates[:1] + [name for name in covariates[1:] if complete[name].nunique() > 1]
    return {**survival.cox(complete, duration, event, used), "covariates": used}


# Transplant (SAP.md section 7) -----------------------------------------------------------------


def transplant_frame(t: pd.DataFrame, tx_column: str) -> pd.DataFrame:
    """PFS with the day of the first transplant of this kind (NaN: none), one row per patient."""
    return pd.DataFrame(
        {
            "time": t["pfs_days"].astype(float),
            "event": t["pfs_event"].astype(int),
            "tx_day": pd.to_numeric(t[tx_column], errors="coerce"),
            "arm": t["arm"],
        },
        index=t.index,
    )


def transplant_block(t: pd.DataFrame, tx_column: str, landmark_days: int) -> dict[str, Any]:
    frame = transplant_frame(t, tx_column)
    # The counting-process rows are built once; each arm's are a subset (they carry the arm).
    rows = transplant.counting_process(frame, covariates=("arm",))
    block = {
        arm: transplant_tests(frame[frame["arm"] == arm], rows[rows["arm"] == arm], landmark_days)
        for arm in ARMS
    }
    both_arms = frame["arm"].nunique() > 1
    block["pooled"] = transplant_tests(
        frame, rows, landmark_days, strata="arm" if both_arms else None
    )
    return block


def transplant_tests(
    frame: pd.DataFrame, rows: pd.DataFrame, landmark_days: int, *, strata: str | None = None
) -> dict[str, Any]:
    """TX: the naive test (biased by immortal time: labelled so) beside the correct ones, from
    the patients' frame and their counting-process rows."""
    return {
        "n": len(frame),
        "n_transplanted": int(frame["tx_day"].notna().sum()),
        "naive_logrank": {
            **transplant.naive_logrank(frame, strata=strata),
            "biased": "immortal time: transplanted patients had to survive until the transplant",
        },
        "time_dependent_cox": transplant.time_dependent_cox(
            rows, covariates=(strata,) if strata else ()
        ),
        "mantel_byar": transplant.mantel_byar(rows, strata=strata),
        "landmark": transplant.landmark(frame, landmark_days, strata=strata),
        "simon_makuch": simon_makuch_with_risk(rows),
    }


def simon_makuch_with_risk(rows: pd.DataFrame) -> dict[str, Any]:
    """Simon-Makuch curves and, for the plots, the patients at risk in each state."""
    curves = transplant.simon_makuch(rows)
    at_risk = {}
    for status, label in ((0, "not_transplanted"), (1, "transplanted")):
        group = rows[rows["transplanted"] == status]
        at_risk[label] = {
            f"{month:g}": int(
                (((group["start"] < days) | (group["start"] == 0)) & (group["stop"] >= days)).sum()
            )
            for month in survival.AT_RISK_MONTHS
            for days in [month * survival.DAYS_PER_MONTH]
        }
    return {**curves, "at_risk": at_risk}


# Data completeness (SAP.md section 8) ---------------------------------------------------------

REQUIRED_FIELDS = (
    "disease_burden",
    "relapse_status",
    "bm_blast_pct",
    "ph_status",
    "prior_hsct",
    "extramedullary",
    "crs_status",
    "icans_status",
)


def field_filled(t: pd.DataFrame, name: str) -> pd.Series:
    values = t[name]
    if name in ("crs_status", "icans_status"):
        return values.isin(KNOWN_STATUS)
    if name == "ph_status":
        return values.isin([PhStatus.POSITIVE, PhStatus.NEGATIVE])
    return values.notna()


def completeness(t: pd.DataFrame, open_queries: pd.DataFrame, *, as_of: date) -> dict[str, Any]:
    block: dict[str, Any] = {"as_of": as_of.isoformat(), "required_fields": list(REQUIRED_FIELDS)}
    for arm in ARMS:
        group = _arm(t, arm)
        filled = {name: _count(field_filled(group, name)) for name in REQUIRED_FIELDS}
        cells = len(group) * len(REQUIRED_FIELDS)
        alive = group[~group["died"].astype(bool)]
        # Last seen: the latest contact or day 0 (registry.domain.followup, the one definition
        # of loss to follow-up the worklist and the queries use too).
        seen = pd.Series([(as_of - day).days for day in alive["last_seen"]], dtype=float)
        queries = open_queries[open_queries["arm"] == arm]["kind"].value_counts()
        block[arm] = {
            "required_fields_filled": sum(filled.values()) / cells if cells else None,
            "filled_by_field": {
                name: (count / len(group) if len(group) else None) for name, count in filled.items()
            },
            "open_queries": {str(kind): int(n) for kind, n in sorted(queries.items())},
            "lost_to_follow_up": sum(
                lost_to_follow_up(last_seen=day, today=as_of) for day in alive["last_seen"]
            ),
            "median_days_since_last_contact": finite_or_none(seen.median()) if len(seen) else None,
        }
    return block


# --- provenance ---------------------------------------------------------------------------------


@functools.cache
def code_version() -> str:
    """`git describe` of the running code where there is a checkout, else the package version
    from pyproject.toml (IMMUNOREG_CODE_VERSION, when set, wins: for builds without .git)."""
    if os.environ.get("IMMUNOREG_CODE_VERSION"):
        return os.environ["IMMUNOREG_CODE_VERSION"]
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # read only: never touch the index
        ).stdout.strip()
        if described:
            return f"git:{described}"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"immunoreg {package_version()}"


def package_version() -> str:
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as pyproject:
            return tomllib.load(pyproject)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def json_safe(output: dict[str, Any]) -> dict[str, Any]:
    """The output as strict JSON gives it back: no NaN or infinity, no numpy values."""
    return json.loads(json.dumps(output, allow_nan=False, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- snapshots ----------------------------------------------------------------------------------


class ComputationRunning(Exception):
    """Another computation holds the lock: one at a time, and never queued twice."""

    def __init__(self, running: Snapshot | None) -> None:
        self.running = running
        if running is None:
            message = _("An analytics computation is already running.")
        else:
            since = formats.time_format(timezone.localtime(running.started_at), "H:i")
            message = _("An analytics computation is already running since %(time)s.") % {
                "time": since
            }
        super().__init__(message)


class ComputationLost(Exception):
    """The computation was declared interrupted by another process while it still ran."""


def lease_length() -> timedelta:
    """How long a computing worker's claim holds without renewal (a few minutes)."""
    return timedelta(seconds=settings.ANALYTICS_LEASE_SECONDS)


def queued_lease_length() -> timedelta:
    """How long a claim may wait for a worker to take it up (nobody renews it meanwhile)."""
    return timedelta(seconds=settings.ANALYTICS_QUEUED_LEASE_SECONDS)


def longest_computation() -> timedelta:
    """After this a computation is taken for hung and its lease no longer renewed: the broker's
    visibility timeout, which is longer than any computation runs."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    return timedelta(seconds=options.get("visibility_timeout", 2 * 3600))


def snapshot_claim(
    *,
    site: Site | None,
    trigger: str,
    user: User | None = None,
    parameters: Parameters = Parameters(),
) -> Snapshot:
    """Take the lock: a `running` snapshot (stage "queued"), or ComputationRunning. A claim
    whose lease ran out is closed first (fail_interrupted)."""
    fail_interrupted()
    now = timezone.now()
    try:
        with transaction.atomic():
            return Snapshot.objects.create(
                site=site,
                trigger=trigger,
                requested_by=user,
                started_at=now,
                heartbeat_at=now,
                lease_expires_at=now + queued_lease_length(),
                code_version=code_version(),
                parameters=parameters.as_dict(),
            )
    except IntegrityError:
        raise ComputationRunning(Snapshot.objects.filter(status=Status.RUNNING).first()) from None


def fail_interrupted(*, now: datetime | None = None) -> int:
    """Close as failed the running claims whose lease ran out: their worker stopped renewing
    it (killed, its container stopped or restarted), whatever host or process it was.

    Each is closed by one UPDATE that checks the lease again, so a renewal that came in
    between wins. The clocks compared are the web's and the worker's: seconds apart at worst,
    against a lease of minutes."""
    now = now or timezone.now()
    count = 0
    for snapshot in Snapshot.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now):
        count += Snapshot.objects.filter(
            pk=snapshot.pk, status=Status.RUNNING, lease_expires_at__lt=now
        ).update(status=Status.FAILED, finished_at=now, error=interruption(snapshot))
    return count


def interruption(snapshot: Snapshot) -> str:
    """Why a claim whose lease ran out is closed, for the data manager and the admin (the
    "interrupted:" prefix marks it: Snapshot.was_interrupted)."""
    expired = timezone.localtime(snapshot.lease_expires_at).strftime("%Y-%m-%d %H:%M:%S %Z")
    if snapshot.stage == Stage.QUEUED:
        return f"interrupted: no worker took it up before its claim expired at {expired}"
    with translation.override("en"):  # stored, as every error is, in English
        stage = str(Stage(snapshot.stage).label).lower()
    return (
        f"interrupted: its worker ({snapshot.worker or 'unknown'}) stopped renewing its claim, "
        f"which expired at {expired}, while {stage}"
    )


class Lease:
    """Holds a computation's claim while it runs: renews its lease from a thread beside it.

    The thread renews every sixth of the lease (30 s of 3 minutes), so that a statistics call
    that takes minutes (lifelines) keeps the claim, whereas a worker killed (SIGKILL, out of
    memory, its container stopped) stops renewing it and within one lease the claim is found
    interrupted, whatever host or PID a restarted worker has. A computation still running after
    `longest_computation` is taken for hung: its lease is no longer renewed. `clock` is for
    the tests. This one holds an analytics snapshot's claim; a subclass says which row it
    holds (`held`) and what a renewal writes (`renewal`): analytics.report.services'
    RenderingLease holds a report rendering's.
    """

    label = "analytics snapshot"

    def __init__(
        self,
        pk: int,
        *,
        clock: Callable[[], datetime] = timezone.now,
        length: timedelta | None = None,
        give_up_after: timedelta | None = None,
    ) -> None:
        self.pk = pk
        self.clock = clock
        self.length = length or lease_length()
        self.give_up_after = give_up_after or longest_computation()
        self.started = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self) -> QuerySet:
        """The row whose lease this is, as long as it is still ours to renew."""
        return Snapshot.objects.filter(pk=self.pk, status=Status.RUNNING)

    def renewal(self, now: datetime) -> dict[str, Any]:
        return {"heartbeat_at": now, "lease_expires_at": now + self.length}

    def renew(self) -> bool:
        """Extend the lease from now; False once it is not ours to renew any more (the claim
        was closed, or the computation has run for too long)."""
        now = self.clock()
        if now - self.started > self.give_up_after:
            logger.error(
                "%s %s has run for longer than %s: its lease is no longer renewed",
                self.label,
                self.pk,
                self.give_up_after,
            )
            return False
        return bool(self.held().update(**self.renewal(now)))

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(
            target=self._keep, name=f"lease-{self.label}-{self.pk}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _keep(self) -> None:
        try:
            while not self._stop.wait(self.length.total_seconds() / 6):
                try:
                    if not self.renew():
                        return  # the computation finds it out at its next step
                except DatabaseError:
                    logger.warning(
                        "could not renew the lease of %s %s; trying again",
                        self.label,
                        self.pk,
                        exc_info=True,
                    )
                    connection.close()  # a new connection at the next try
        finally:
            connection.close()  # this thread's own connection


def _mark(snapshot: Snapshot, **fields: Any) -> None:
    """Record progress on a running snapshot and renew its lease; it must still be running."""
    now = timezone.now()
    fields.update(heartbeat_at=now, lease_expires_at=now + lease_length())
    updated = Snapshot.objects.filter(pk=snapshot.pk, status=Status.RUNNING).update(**fields)
    if not updated:
        raise ComputationLost(f"snapshot {snapshot.pk} is no longer running")
    for name, value in fields.items():
        setattr(snapshot, name, value)


def _finish(snapshot: Snapshot, **fields: Any) -> Snapshot:
    """Leave `running`, in one UPDATE: from here on the snapshot never changes."""
    fields.update(stage=Stage.DONE, finished_at=timezone.now())
    _mark(snapshot, **fields)
    return Snapshot.objects.get(pk=snapshot.pk)


def snapshot_run(snapshot: Snapshot, *, skip_if_unchanged: bool = False) -> Snapshot:
    """Compute a claimed snapshot; on any error it is marked failed and the error re-raised."""
    try:
        with Lease(snapshot.pk):
            return _compute(snapshot, skip_if_unchanged=skip_if_unchanged)
    except ComputationLost:
        raise
    except BaseException as error:
        _record_failure(snapshot, error)
        raise


def _compute(snapshot: Snapshot, *, skip_if_unchanged: bool) -> Snapshot:
    _mark(snapshot, stage=Stage.FRAMES, worker=this_worker())
    started = time.perf_counter()
    frames = analysis_frames(site_ids=None if snapshot.site_id is None else [snapshot.site_id])
    fingerprint = frames.fingerprint
    timings = {"frames_s": round(time.perf_counter() - started, 3)}
    latest = Snapshot.objects.latest_complete(snapshot.site_id)
    if skip_if_unchanged and _same_inputs(latest, snapshot, fingerprint):
        return _finish(
            snapshot,
            status=Status.SKIPPED,
            same_as=latest,
            fingerprint=fingerprint,
            row_counts=frames.row_counts,
            timings=timings,
        )
    _mark(snapshot, stage=Stage.STATISTICS, fingerprint=fingerprint, row_counts=frames.row_counts)
    started = time.perf_counter()
    parameters = Parameters(**snapshot.parameters)
    output = sap_output(
        frames,
        parameters=parameters,
        as_of=today(),
        progress=lambda section: _mark(snapshot),
    )
    timings["stats_s"] = round(time.perf_counter() - started, 3)
    _mark(snapshot, stage=Stage.SAVING)
    output = json_safe(
        {
            "schema_version": SCHEMA_VERSION,
            "generated_at": timezone.now().isoformat(),
            "data_fingerprint": fingerprint,
            "code_version": snapshot.code_version,
            "parameters": parameters.as_dict(),
            "scope": {"site": snapshot.site.code if snapshot.site_id else None},
            "as_of": today().isoformat(),
            "row_counts": frames.row_counts,
            **output,
        }
    )
    return _finish(snapshot, status=Status.COMPLETE, output=output, timings=timings)


def _same_inputs(latest: Snapshot | None, snapshot: Snapshot, fingerprint: str) -> bool:
    return (
        latest is not None
        and latest.fingerprint == fingerprint
        and latest.code_version == snapshot.code_version
        and latest.parameters == snapshot.parameters
    )


def _record_failure(snapshot: Snapshot, error: BaseException) -> None:
    """Best effort: the database may be what failed; then the next claim finds it interrupted."""
    message = f"{type(error).__name__}: {error}"[:5000]
    try:
        Snapshot.objects.filter(pk=snapshot.pk, status=Status.RUNNING).update(
            status=Status.FAILED, stage=Stage.DONE, finished_at=timezone.now(), error=message
        )
    except Exception:  # the original error is the one to report
        logger.exception("could not record the failure of analytics snapshot %s", snapshot.pk)


def snapshot_compute(
    *,
    site: Site | None,
    trigger: str,
    user: User | None = None,
    skip_if_unchanged: bool = False,
) -> Snapshot:
    """Claim and compute one scope now (the command, the nightly run, a task)."""
    snapshot = snapshot_claim(site=site, trigger=trigger, user=user)
    return snapshot_run(snapshot, skip_if_unchanged=skip_if_unchanged)


def snapshot_recompute(
    *,
    trigger: str,
    site_code: str | None = None,
    user_id: int | None = None,
    snapshot_id: int | None = None,
) -> Snapshot:
    """What the task runs: the snapshot claimed for it, or (after a retry found it failed, or
    with none claimed) a new one for the same scope. A task delivered again once its claim was
    closed as interrupted finds its scope computed since by the watchdog: that one is its
    result, not a second computation."""
    if snapshot_id is not None:
        claimed = Snapshot.objects.select_related("site").get(pk=snapshot_id)
        if claimed.status == Status.RUNNING:
            return _with_figures(snapshot_run(claimed))
        since = (
            Snapshot.objects.complete()
            .for_scope(claimed.site_id)
            .filter(started_at__gt=claimed.started_at)
            .order_by("-finished_at", "-pk")
            .first()
        )
        if claimed.was_interrupted and since is not None:
            return since
        site, user = claimed.site, claimed.requested_by
    else:
        site = Site.objects.get(code=site_code) if site_code else None
        user = User.objects.get(pk=user_id) if user_id else None
    return _with_figures(snapshot_compute(site=site, trigger=trigger, user=user))


def _with_figures(snapshot: Snapshot) -> Snapshot:
    """A complete snapshot's figures are drawn as soon as it is complete, in every language."""
    figures_draw(snapshot)
    return snapshot


def snapshots_refresh_all(*, trigger: str = Trigger.NIGHTLY) -> list[Snapshot]:
    """The whole registry, then every site, each skipped where nothing changed (SAP.md 9):
    every scope anyone may see (scopes_visible_to), with its figures.

    A scope that fails is recorded and the others still computed; transient database errors
    and a computation already running stop the run (the task retries it later).
    """
    done, failed = [], []
    for site in [None, *Site.objects.order_by("code")]:
        try:
            snapshot = snapshot_compute(site=site, trigger=trigger, skip_if_unchanged=True)
            done.append(_with_figures(snapshot))
        except (OperationalError, ComputationRunning):
            raise
        except Exception as error:
            logger.exception("analytics for %s failed", site or "the whole registry")
            failed.append(f"{site or 'whole registry'}: {error}")
    if failed:
        raise AnalyticsFailed("; ".join(failed))
    return done


class AnalyticsFailed(Exception):
    """At least one scope of the nightly run failed (each is recorded in its snapshot)."""


# --- the watchdog -------------------------------------------------------------------------------


def computations_watch(*, now: datetime | None = None) -> list[Snapshot]:
    """Every minute (analytics.tasks.watch_computations): close the claims whose lease ran out,
    and compute again the scope of one interrupted computation (a nightly one: the rest of the
    nightly run, unchanged scopes skipped). Returns what it computed.

    Why a watchdog: the task of a computation killed with its worker is delivered again by the
    broker only after the visibility timeout (2 hours in production: longer than any task runs,
    so that a running task is never handed out twice); meanwhile the claim would block every
    computation and the person who asked would wait. The next claim closes an expired one too,
    but at night nobody claims; and it computes its own scope, not the interrupted one. So a
    schedule of its own, every minute: an interrupted computation is done again within the
    lease plus a minute, whatever worker or container restarted where. One scope per run, in
    this task: the next run takes the next (while another computation runs it does nothing).
    A late delivery of the lost task finds its scope computed since (snapshot_recompute).
    """
    now = now or timezone.now()
    fail_interrupted(now=now)
    interrupted = next(interrupted_to_recover(now=now), None)
    if interrupted is None:
        return []
    logger.warning(
        "analytics for %s were interrupted (snapshot %s): computing them again",
        scope_label(interrupted.site),
        interrupted.pk,
    )
    try:
        if interrupted.trigger == Trigger.NIGHTLY:
            return snapshots_refresh_all(trigger=Trigger.NIGHTLY)
        snapshot = snapshot_compute(
            site=interrupted.site, trigger=interrupted.trigger, user=interrupted.requested_by
        )
    except ComputationRunning:
        return []  # the next run looks again
    return [_with_figures(snapshot)]


def interrupted_to_recover(*, now: datetime) -> Iterator[Snapshot]:
    """The scopes whose latest computation was interrupted within RECOVER_WITHIN, by that
    computation, oldest first; not those interrupted RECOVER_AT_MOST times in a row."""
    recent = (
        Snapshot.objects.filter(
            status=Status.FAILED,
            error__startswith="interrupted:",
            finished_at__gte=now - RECOVER_WITHIN,
        )
        .order_by("started_at", "pk")
        .values_list("site_id", flat=True)
    )
    for site_id in dict.fromkeys(recent):
        history = list(
            Snapshot.objects.for_scope(site_id)
            .select_related("site", "requested_by")
            .order_by("-started_at", "-pk")[:RECOVER_AT_MOST]
        )
        if not history[0].was_interrupted:
            continue  # computed (or being computed) since
        if len(history) == RECOVER_AT_MOST and all(s.was_interrupted for s in history):
            logger.error(
                "analytics for %s were interrupted %s times in a row: not computed again "
                "automatically (see the snapshots' errors)",
                scope_label(history[0].site),
                RECOVER_AT_MOST,
            )
            continue
        yield history[0]


# --- who sees what ------------------------------------------------------------------------------


def scope_label(site: Site | None) -> str:
    return _("Whole registry") if site is None else f"{site.code} · {site.name}"


def scopes_visible_to(user: User) -> list[Site | None]:
    """The scopes whose sites are all the user's: the whole registry (None) only for those who
    have every site (administrators), then each of their sites."""
    if not can(user, Action.ANALYTICS):
        return []
    sites = list(Site.objects.order_by("code"))
    mine = user_site_ids(user)
    if mine is None:
        return [None, *sites]
    whole: list[Site | None] = [None] if {site.pk for site in sites} <= mine else []
    return whole + [site for site in sites if site.pk in mine]


def recompute_scopes(user: User) -> list[Site | None]:
    """The scopes this user may recompute now: data managers their visible scopes,
    administrators all of them; nobody else any."""
    if not (user.is_authenticated and (user.is_administrator or user.role == Role.DATA_MANAGER)):
        return []
    return scopes_visible_to(user)


def may_recompute(user: User, site: Site | None) -> bool:
    return site in recompute_scopes(user)


def recompute_request(*, user: User, site: Site | None) -> Snapshot:
    """ "Recompute now": claim the computation and hand it to a worker.

    Raises ComputationRunning while another one runs: the request is refused, not queued.
    """
    if not may_recompute(user, site):
        raise PermissionDenied(_("You may not recompute the analytics of this scope."))
    return _hand_to_worker(snapshot_claim(site=site, trigger=Trigger.ON_DEMAND, user=user))


def _hand_to_worker(snapshot: Snapshot) -> Snapshot:
    """Send a claimed snapshot to a worker (analytics.tasks.recompute_analytics)."""
    try:
        queue.send("recompute", trigger=snapshot.trigger, snapshot_id=snapshot.pk)
    except Exception as error:
        # Eagerly run (no broker) its failure is already recorded; a broker that refused the
        # message leaves the claim to release here.
        logger.exception("recompute of snapshot %s did not run", snapshot.pk)
        _record_failure(snapshot, error)
    snapshot.refresh_from_db()
    return snapshot


# --- a scope nobody computed yet ---------------------------------------------------------------

# Asking again within this time (a reload, a second reader) queues nothing more.
FIRST_COMPUTATION_QUEUED_SECONDS = 600


def scope_computation_request(*, user: User, site: Site | None) -> Snapshot | None:
    """A scope the user may see that has no complete snapshot yet is computed now: the running
    computation of that scope, else one claimed and handed to a worker. While another scope is
    being computed, the computation is queued to start when it is free (and None returned)."""
    if site not in scopes_visible_to(user):
        raise PermissionDenied(_("You may not see the analytics of this scope."))
    if Snapshot.objects.latest_complete(site) is not None:
        return None
    fail_interrupted()  # a dead computation's claim is not followed, nor waited for
    running = Snapshot.objects.filter(status=Status.RUNNING).select_related("site").first()
    if running is not None and running.site_id == (site.pk if site else None):
        return running
    try:
        return _hand_to_worker(snapshot_claim(site=site, trigger=Trigger.ON_DEMAND, user=user))
    except ComputationRunning:
        scope = site.code if site else ""
        if cache.add(
            f"analytics-first-computation:{scope}", True, FIRST_COMPUTATION_QUEUED_SECONDS
        ):
            try:
                queue.send("compute-missing", site_code=scope or None, user_id=user.pk)
            except Exception:
                logger.exception(
                    "the first computation of %s could not be queued", scope_label(site)
                )
        return None


def scope_compute_if_missing(
    *, site_code: str | None, user_id: int | None = None
) -> Snapshot | None:
    """What the queued first computation runs: the scope, unless it was computed meanwhile.
    Raises ComputationRunning while another computation runs (the task tries again later)."""
    site = Site.objects.get(code=site_code) if site_code else None
    if Snapshot.objects.latest_complete(site) is not None:
        return None
    user = User.objects.filter(pk=user_id).first() if user_id else None
    return _with_figures(snapshot_compute(site=site, trigger=Trigger.ON_DEMAND, user=user))
