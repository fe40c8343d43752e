"""Several people at once, against gunicorn and PostgreSQL: 20 API clients updating the same record
from the same version, and two imports of the same file overlapping."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading

from tests.deploy.conftest import BASE_DIR, Client, Stack

CLIENTS = 20

TOKEN = """
from registry.api.auth import api_token_create
from registry.models import User
print(api_token_create(user=User.objects.get(username="nurse"))[1])
"""


def api_client(stack: Stack, token: str) -> Client:
    client = Client(stack.port)
    client.token = token
    return client


def test_twenty_clients_updating_one_record_from_one_version_one_wins_and_nothing_is_lost(stack):
    token = stack.django(TOKEN).strip()
    created = api_client(stack, token).request(
        "POST",
        "/api/v1/patients/",
        json_body={"site": "AHP", "study_id": "RACE-1", "sex": "M", "year_of_birth": 1980},
    )
    assert created.status == 201, created.text
    patient = created.json()
    barrier = threading.Barrier(CLIENTS)
    answers: dict[int, int] = {}

    def update(number: int) -> None:
        client = api_client(stack, token)
        barrier.wait()
        answers[number] = client.request(
            "PATCH",
            f"/api/v1/patients/{patient['id']}/",
            json_body={
                "version": patient["version"],
                "reason": f"correction by client {number}",
                "year_of_birth": 1950 + number,
            },
        ).status

    threads = [threading.Thread(target=update, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [number for number, status in answers.items() if status == 200]
    assert len(answers) == CLIENTS and len(winners) == 1, answers
    assert sorted(answers.values()) == [200] + [409] * (CLIENTS - 1)
    [(version, year)] = stack.query(
        "SELECT version, year_of_birth FROM registry_patient WHERE id = %s", patient["id"]
    )
    assert (version, year) == (patient["version"] + 1, 1950 + winners[0])
    history = stack.query(
        "SELECT history_change_reason FROM registry_historicalpatient WHERE id = %s "
        "ORDER BY history_id",
        patient["id"],
    )
    assert [reason for (reason,) in history][1:] == [f"correction by client {winners[0]}"]


# Large enough that the two imports overlap on any machine (each takes seconds, not ms).
COHORT_ROWS = 600


def cohort_csv() -> bytes:
    output = io.StringIO()
    writer = csv.writer(output)
    writer.writerow(
        [
            *("study_id", "site", "sex", "year_of_birth", "arm", "treatment_start"),
            *("disease_burden", "relapse_status", "last_contact_date"),
        ]
    )
    for number in range(COHORT_ROWS):
        writer.writerow(
            [
                *(f"IMP-{number:03d}", "AHP", "MF"[number % 2], 1970 + number % 30, "car_t"),
                *("2023-02-01", "morphologic", "first_relapse", "2023-08-01"),
            ]
        )
    return output.getvalue().encode()


def test_two_overlapping_imports_of_one_file_create_each_patient_once(stack, tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_bytes(cohort_csv())
    env = stack.env()
    imports = [
        subprocess.Popen(
            [sys.executable, "manage.py", "import_cohort", str(cohort)],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=180), *run.communicate()) for run in imports]

    counts = stack.query(
        "SELECT study_id, count(*) FROM registry_patient WHERE study_id LIKE 'IMP-%%' "
        "GROUP BY study_id"
    )
    assert len(counts) == COHORT_ROWS and {n for _, n in counts} == {1}, counts
    assert sorted(code for code, _, _ in results) == [0, 1], results
    loser = next(result for result in results if result[0] == 1)
    assert "Traceback" not in loser[2], f"the second import crashed:\n{loser[2][-3000:]}"
    runs = stack.query(
        "SELECT started_at, finished_at, outcome FROM registry_importrun "
        "WHERE file_name = 'cohort.csv' ORDER BY started_at"
    )
    assert sorted(outcome for *_, outcome in runs) == ["imported", "rejected"], runs
    (_, first_finished, _), (second_started, _, _) = runs
    assert second_started < first_finished, "the two imports did not overlap"
