"""A model that cannot be fitted is explained to readers in one sentence of their language, on
the page and in the PDF; the numerical account goes to the log, never to a reader."""

from __future__ import annotations

import logging
import subprocess

import pandas as pd
import pytest
from django.urls import reverse
from django.utils import translation

from analytics import services
from analytics.models import Trigger
from analytics.report import formatting
from analytics.report.context import Month
from analytics.report.services import report_pdf
from analytics.stats import survival
from registry import demo
from registry.domain.vocabulary import Role

pytestmark = pytest.mark.django_db

# What lifelines says of a model that does not converge: for the log only.
TECHNICAL = (
    "norm(delta)",
    "Newton-Raphson",
    "delta contains",
    "matrix inversion",
    "log-likelihood",
)


def pdf_text(pdf: bytes) -> str:
    result = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return result.stdout.decode()


def without_space(text: str) -> str:
    return "".join(text.split())


def separated(frame: pd.DataFrame) -> pd.DataFrame:
    """Progression only in the CAR-T arm: complete separation of the Cox model by arm."""
    frame = frame.copy()
    frame["pfs_event"] = frame["car_t"]
    return frame


@pytest.fixture
def snapshot(users, site, monkeypatch, caplog):
    demo.seed_scaled(30)
    real = services.survival_frame
    monkeypatch.setattr(services, "survival_frame", lambda t: separated(real(t)))
    with caplog.at_level(logging.INFO, logger="analytics.stats"):
        snapshot = services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    return snapshot


def separation_sentence(language: str) -> str:
    with translation.override(language):
        return formatting.not_estimable("model did not converge (separation or collinearity)")


def test_the_snapshot_keeps_a_short_reason_and_the_log_the_detail(snapshot, caplog):
    cox = snapshot.output["survival"]["pfs"]["cox"]
    assert cox["hr"] is None
    assert cox["reason"] == "model did not converge (separation or collinearity)"
    logged = " ".join(record.getMessage() for record in caplog.get_records("setup"))
    assert "Cox model of car_t" in logged and any(word in logged for word in TECHNICAL)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_page_explains_it_in_one_translated_sentence(client, users, site, snapshot, language):
    pi = users[Role.PI]
    pi.language = language
    pi.save(update_fields=["language"])
    client.force_login(pi)
    html = client.get(reverse("analytics:scope", args=[site.code])).content.decode()
    sentence = separation_sentence(language)
    assert sentence in html
    assert not any(word in html for word in TECHNICAL)
    if language == "zh-hans":
        assert sentence != separation_sentence("en") and "Not estimable" not in html


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_pdf_explains_it_in_one_translated_sentence(site, snapshot, language):
    pdf, _ = report_pdf(site=site, month=Month.parse("2024-10"), language=language)
    text = pdf_text(pdf)
    assert without_space(separation_sentence(language)) in without_space(text)
    assert not any(word in text for word in TECHNICAL)
    if language == "zh-hans":
        assert "Not estimable" not in text


@pytest.mark.parametrize(
    "reason, words",
    [
        ("no events", "too few events"),
        ("model could not be fitted (separation or collinearity)", "completely separated"),
        ("estimate is not finite (separation?)", "completely separated"),
        ("car_t does not vary", "only one group"),
        ("no patient transplanted", "only one group"),
        # an older snapshot's reason, kept in lifelines' words, reads the same
        ("model did not converge: Newton-Raphson ... norm(delta) is still high", "separated"),
        ("something new", "from these data"),
    ],
)
def test_each_kind_of_reason_reads_as_one_sentence(reason, words):
    assert words in formatting.not_estimable(reason)


def test_the_pooled_transplant_row_is_named_alike_on_the_page_and_in_the_pdf(
    client, users, site, snapshot
):
    client.force_login(users[Role.PI])
    html = client.get(reverse("analytics:scope", args=[site.code])).content.decode()
    pdf, _ = report_pdf(site=site, month=Month.parse("2024-10"), language="en")
    name = str(formatting.POOLED)
    assert name in html
    assert without_space(name) in without_space(pdf_text(pdf))
    for other in ("stratified by arm", "arm as covariate"):
        assert other not in html and other not in pdf_text(pdf)


def test_a_cox_model_with_complete_separation_logs_lifelines_words(caplog):
    frame = pd.DataFrame(
        {
            "time": [1.0, 2, 3, 4, 5, 6, 7, 8],
            "event": [1, 1, 1, 1, 0, 0, 0, 0],
            "x": [1, 1, 1, 1, 0, 0, 0, 0],
        }
    )
    with caplog.at_level(logging.INFO, logger="analytics.stats"):
        result = survival.cox(frame, "time", "event", ["x"])
    assert result["hr"] is None and "separation" in result["reason"]
    assert any(word in caplog.text for word in TECHNICAL)
