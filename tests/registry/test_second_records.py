"""A write that changes a second record reads it again inside its transaction, bumps its version
and writes its history (issue #13.1): a copy read before the write never undoes a change made
meanwhile. (The same races between processes: tests/deploy/test_fault_cross_record.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from registry import services
from registry.models import CrsEpisode, ResponseAssessment, Treatment
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def versions_in_history(record) -> list[int]:
    return sorted(row.version for row in type(record).history.filter(id=record.pk))


def test_a_new_episode_keeps_a_treatment_edit_made_after_the_treatment_was_read(
    nurse, data_manager, treatment
):
    read_before = Treatment.objects.get(pk=treatment.pk)  # the page's copy
    services.record_update(
        treatment, user=data_manager, reason="pharmacy", version=1, product="Tisagenlecleucel"
    )

    services.record_create(
        CrsEpisode, user=nurse, treatment=read_before, onset=DAY0, recorded_grade=1
    )

    treatment.refresh_from_db()
    assert (treatment.product, treatment.crs_status, treatment.version) == (
        "Tisagenlecleucel",
        "yes",
        3,
    )
    assert versions_in_history(treatment) == [1, 2, 3]


def test_a_death_keeps_an_episode_edit_made_after_the_episode_was_read(nurse, treatment):
    episode = services.record_create(
        CrsEpisode,
        user=nurse,
        treatment=treatment,
        onset=DAY0,
        max_temperature_c=39.5,
        hypotension=True,
        vasopressors=2,
        oxygen="high_flow",
    )
    read_before = CrsEpisode.objects.get(pk=episode.pk)
    services.record_update(episode, user=nurse, reason="drug chart", version=1, tocilizumab_doses=3)

    services.death_record(
        patient=treatment.patient,
        user=nurse,
        date=DAY0 + timedelta(days=5),
        cause="crs",
        fatal_episode=read_before,
    )

    episode.refresh_from_db()
    assert (episode.tocilizumab_doses, episode.died_of_crs, episode.version) == (3, True, 3)
    assert versions_in_history(episode) == [1, 2, 3]


def test_a_record_is_checked_against_its_parent_as_it_is_now_not_as_it_was_read(nurse, treatment):
    read_before = Treatment.objects.get(pk=treatment.pk)
    services.record_update(
        treatment, user=nurse, reason="infusion delayed", version=1, day0=DAY0 + timedelta(days=20)
    )

    with pytest.raises(ValidationError) as refused:
        services.record_create(
            ResponseAssessment,
            user=nurse,
            treatment=read_before,
            date=DAY0 + timedelta(days=10),
            response="cr",
        )

    assert "date" in refused.value.message_dict
    assert not ResponseAssessment.objects.exists()
