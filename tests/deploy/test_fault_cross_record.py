"""Writes that change a second record, at the same time as an edit of that record, against
gunicorn (several workers and threads) and PostgreSQL (issue #13.1): no edit answered 200 is
undone, and no record has two history rows with the same version.

- A new CRS episode sets its treatment's CRS status from unknown to yes, while a nurse edits the
  treatment from the version she read.
- A death from CRS marks its fatal episode (grade 5), while someone edits the episode.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from tests.deploy.conftest import Answer, Client, Stack

PAIRS = 30
AT_ONCE = 6  # pairs sent together (gunicorn serves 2 workers x 8 threads)

SETUP = """
import json
from datetime import date
from rest_framework.authtoken.models import Token
from registry import services
from registry.models import CrsEpisode, Patient, Site, Treatment, User

nurse = User.objects.get(username="nurse")
site = Site.objects.get(code="AHP")
made = {{"T": [], "D": []}}
for prefix, records in made.items():
    for number in range({pairs}):
        patient = services.record_create(
            Patient, user=nurse, site=site, study_id=f"XR-{{prefix}}-{{number:02d}}", sex="F",
            year_of_birth=1980, diagnosis_date=date(2023, 11, 1),
        )
        treatment = services.record_create(
            Treatment, user=nurse, patient=patient, arm="car_t", day0=date(2024, 1, 10),
            disease_burden="morphologic", bm_blast_pct=40, relapse_status="first_relapse",
        )
        episode = None
        if prefix == "D":
            episode = services.record_create(
                CrsEpisode, user=nurse, treatment=treatment, onset=date(2024, 1, 12),
                max_temperature_c=39.5, hypotension=True, vasopressors=2, oxygen="high_flow",
            )
        records.append({{
            "patient": patient.pk,
            "treatment": treatment.pk, "treatment_version": treatment.version,
            "episode": episode and episode.pk, "episode_version": episode and episode.version,
        }})
token = Token.objects.get_or_create(user=nurse)[0].key
print(json.dumps({{"token": token, "made": made}}))
"""


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict:
    """The nurse's API token, and PAIRS patients for each test: "T" with a treatment whose CRS
    status is unknown, "D" with a treatment and a grade 4 CRS episode (one process for both)."""
    out = stack.django(SETUP.format(pairs=PAIRS))
    return json.loads(out.strip().splitlines()[-1])


def in_pairs_at_once(
    stack: Stack, token: str, requests: list[tuple[Callable, Callable]]
) -> list[tuple[Answer, Answer]]:
    """Send each pair's two requests at the same instant, AT_ONCE pairs at a time."""
    answers: list[list[Answer | None]] = [[None, None] for _ in requests]
    for start in range(0, len(requests), AT_ONCE):
        wave = list(enumerate(requests))[start : start + AT_ONCE]
        barrier = threading.Barrier(2 * len(wave))

        def send(
            number: int, side: int, request: Callable, barrier: threading.Barrier = barrier
        ) -> None:
            client = Client(stack.port)
            client.token = token
            barrier.wait()
            answers[number][side] = request(client)

        threads = [
            threading.Thread(target=send, args=(number, side, pair[side]))
            for number, pair in wave
            for side in (0, 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert all(a is not None and b is not None for a, b in answers), "a request did not finish"
    return [(a, b) for a, b in answers]


def repeated_versions(stack: Stack, table: str, ids: list[int]) -> list[tuple]:
    return stack.query(
        f"SELECT id, version, count(*) FROM {table} WHERE id = ANY(%s) "
        "GROUP BY id, version HAVING count(*) > 1",
        ids,
    )


def test_a_treatment_edit_at_the_same_time_as_a_new_crs_episode_is_never_lost(stack, world):
    token, made = world["token"], world["made"]["T"]

    def edit(record: dict, number: int) -> Callable[[Client], Answer]:
        return lambda client: client.request(
            "PATCH",
            f"/api/v1/treatments/{record['treatment']}/",
            json_body={
                "version": record["treatment_version"],
                "reason": "product from the pharmacy",
                "product": f"edit {number}",
            },
        )

    def episode(record: dict) -> Callable[[Client], Answer]:
        return lambda client: client.request(
            "POST",
            "/api/v1/crs-episodes/",
            json_body={
                "treatment": record["treatment"],
                "onset": "2024-01-12",
                "max_temperature_c": "39.0",
                "hypotension": False,
                "oxygen": "none",
            },
        )

    answers = in_pairs_at_once(stack, token, [(edit(r, n), episode(r)) for n, r in enumerate(made)])

    lost = []
    for number, (record, (edited, added)) in enumerate(zip(made, answers, strict=True)):
        assert edited.status in (200, 409), edited.text
        assert added.status == 201, added.text
        [(product, crs_status)] = stack.query(
            "SELECT product, crs_status FROM registry_treatment WHERE id = %s", record["treatment"]
        )
        assert crs_status == "yes", number  # the episode's change is kept too
        if edited.status == 200 and product != f"edit {number}":
            lost.append(number)
    assert lost == [], f"edits answered 200 and undone: {lost}"
    ids = [record["treatment"] for record in made]
    assert repeated_versions(stack, "registry_historicaltreatment", ids) == []


def test_an_episode_edit_at_the_same_time_as_a_death_from_it_is_never_lost(stack, world):
    token, made = world["token"], world["made"]["D"]

    def edit(record: dict, number: int) -> Callable[[Client], Answer]:
        return lambda client: client.request(
            "PATCH",
            f"/api/v1/crs-episodes/{record['episode']}/",
            json_body={
                "version": record["episode_version"],
                "reason": "doses from the drug chart",
                "tocilizumab_doses": 1 + number % 4,
            },
        )

    def death(record: dict) -> Callable[[Client], Answer]:
        return lambda client: client.request(
            "POST",
            "/api/v1/deaths/",
            json_body={
                "patient": record["patient"],
                "date": "2024-01-20",
                "cause": "crs",
                "fatal_crs_episode": record["episode"],
                "reason": "death reported",
            },
        )

    answers = in_pairs_at_once(stack, token, [(edit(r, n), death(r)) for n, r in enumerate(made)])

    lost = []
    for number, (record, (edited, died)) in enumerate(zip(made, answers, strict=True)):
        assert edited.status in (200, 409), edited.text
        assert died.status == 201, died.text
        [(doses, fatal)] = stack.query(
            "SELECT tocilizumab_doses, died_of_crs FROM registry_crsepisode WHERE id = %s",
            record["episode"],
        )
        assert fatal, number  # the death's change is kept too
        if edited.status == 200 and doses != 1 + number % 4:
            lost.append(number)
    assert lost == [], f"edits answered 200 and undone: {lost}"
    ids = [record["episode"] for record in made]
    assert repeated_versions(stack, "registry_historicalcrsepisode", ids) == []
