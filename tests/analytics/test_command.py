"""`compute_analytics [--site CODE] [--json FILE]` writes exactly the JSON of SAP.md section 10."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from analytics import services
from analytics.models import Snapshot, Status, Trigger
from registry import demo

pytestmark = pytest.mark.django_db

ARMS = ("blinatumomab", "car_t")
PATIENTS = 40  # seed_scaled puts the first 101 at AHP
TOP_LEVEL = {
    "schema_version",
    "generated_at",
    "data_fingerprint",
    "code_version",
    "parameters",
    "populations",
    "crs",
    "icans",
    "response",
    "subgroups",
    "survival",
    "transplant",
}
RATE = {"n", "N", "proportion", "ci95"}
CMH = {"chi2", "p", "or_mh", "ci95", "p_breslow_day"}
KM = {
    "n",
    "events",
    "median_months",
    "median_ci95",
    "rate_12m",
    "rate_12m_ci95",
    "rate_24m",
    "rate_24m_ci95",
    "at_risk",
    "curve",
}
AT_RISK_MONTHS = {"0", "3", "6", "9", "12", "18", "24"}
SAP_PARAMETERS = {"landmark_days": 90, "alpha": 0.05, "days_per_month": 30.4375}
TX = {"n_transplanted", "naive_logrank", "time_dependent_cox", "mantel_byar", "landmark"}


@pytest.fixture
def cohort(users):
    return demo.seed_scaled(PATIENTS)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("compute_analytics", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def strict_json(text: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_rate_cmp(block: dict[str, Any]) -> None:
    assert set(block) >= {*ARMS, "p_fisher"}
    for arm in ARMS:
        assert set(block[arm]) >= RATE and len(block[arm]["ci95"]) == 2


def assert_km(block: dict[str, Any]) -> None:
    assert set(block) >= KM and set(block["at_risk"]) == AT_RISK_MONTHS
    assert all(set(step) >= {"t", "s", "lo", "hi"} for step in block["curve"])


def assert_tx(block: dict[str, Any]) -> None:
    assert set(block) >= TX
    assert set(block["naive_logrank"]) >= {"chi2", "p"}
    assert set(block["time_dependent_cox"]) >= {"hr", "ci95", "p"}
    assert set(block["mantel_byar"]) >= {"chi2", "p"}
    assert set(block["landmark"]) >= {"days", "n_transplanted", "n_not", "p"}


def test_json_on_stdout_has_every_key_of_sap_section_10_and_no_nan(cohort):
    out, err = run("--json", "-")
    output = strict_json(out)
    assert set(output) >= TOP_LEVEL and output["schema_version"] == 1
    # SAP.md section 10: the fixed conventions.
    assert output["parameters"].items() >= SAP_PARAMETERS.items()
    for arm in ARMS:
        assert set(output["populations"][arm]) >= {
            "analysis",
            "crs_evaluable",
            "icans_evaluable",
            "response_evaluable",
        }
        assert set(output["crs"]["grade_distribution"][arm]) == {str(g) for g in range(6)}
    for block in (output["crs"], output["icans"]):
        assert_rate_cmp(block["any"])
        assert_rate_cmp(block["severe"])
    for name in ("cr", "mrd_negative_cr", "mrd_negative_cr_itt"):
        assert_rate_cmp(output["response"][name])
    for factor, levels in {
        "disease_burden": ("mrd_only", "morphologic"),
        "relapse_group": ("not_relapsed", "first_relapse", "second_or_later_relapse"),
    }.items():
        for level in levels:
            assert_rate_cmp(output["subgroups"][factor][level]["crs_any"])
            assert_rate_cmp(output["subgroups"][factor][level]["crs_severe"])
        for name in ("crs_any", "crs_severe"):
            assert set(output["subgroups"][factor]["cmh"][name]) >= CMH
    for endpoint in ("pfs", "os"):
        block = output["survival"][endpoint]
        assert set(block) >= {*ARMS, "logrank", "cox", "cox_adjusted"}
        for arm in ARMS:
            assert_km(block[arm])
        assert set(block["cox"]) >= {"hr", "ci95", "p"}
    assert set(output["survival"]["median_followup_months"]) == set(ARMS)
    for kind in ("any_hsct", "ucbt"):
        for group in (*ARMS, "pooled"):
            assert_tx(output["transplant"][kind][group])
    assert "Snapshot" in err and output["data_fingerprint"] in err


def test_the_json_is_the_stored_snapshots_output(cohort):
    output = strict_json(run("--json", "-")[0])
    snapshot = Snapshot.objects.get()
    assert snapshot.trigger == Trigger.COMMAND and snapshot.output == output


def test_json_to_a_file_and_a_summary_on_stdout(cohort, tmp_path):
    target = tmp_path / "out" / "analytics.json"
    out, _ = run("--json", str(target))
    output = strict_json(target.read_text(encoding="utf-8"))
    assert {arm: output["populations"][arm]["analysis"] for arm in ARMS} == cohort.patients
    assert out.startswith("Snapshot ") and f"{PATIENTS} patients" in out


def test_a_site_counts_only_its_patients(cohort, site):
    output = strict_json(run("--site", site.code, "--json", "-")[0])
    assert output["scope"] == {"site": site.code}
    assert {arm: output["populations"][arm]["analysis"] for arm in ARMS} == cohort.patients


def test_an_unknown_site_exits_1_naming_the_known_ones(cohort):
    with pytest.raises(CommandError, match="Unknown site 'NOPE'; known sites: AHP") as error:
        run("--site", "NOPE")
    assert error.value.returncode == 1
    assert not Snapshot.objects.exists()


def test_a_computation_already_running_exits_1_with_a_clear_message(cohort):
    services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)
    with pytest.raises(CommandError, match="already running since") as error:
        run("--json", "-")
    assert error.value.returncode == 1


def test_a_failed_computation_exits_1_and_is_recorded_as_failed(cohort, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("no data in the expected shape")

    monkeypatch.setattr(services.transplant, "mantel_byar", broken)
    with pytest.raises(CommandError, match="recorded as failed") as error:
        run("--json", "-")
    assert error.value.returncode == 1
    assert Snapshot.objects.get().status == Status.FAILED
