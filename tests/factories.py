"""Test data built the way users build it: through registry.services."""

from __future__ import annotations

from datetime import date, timedelta

import factory

from registry import services
from registry.domain.vocabulary import Role
from registry.models import Patient, Site, Treatment, User


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"S{n:02d}")
    name = factory.LazyAttribute(lambda site: f"Hospital {site.code}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.NURSE
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def sites(self, create, extracted, **kwargs):
        self.save()
        if extracted:
            self.sites.set(extracted)


DAY0 = date(2022, 3, 1)


def patient(*, user, site: Site, study_id: str = "P001", **fields) -> Patient:
    values = {"sex": "F", "year_of_birth": 1990, "diagnosis_date": DAY0 - timedelta(days=200)}
    return services.record_create(
        Patient, user=user, site=site, study_id=study_id, **(values | fields)
    )


def treatment(*, user, patient: Patient, **fields) -> Treatment:
    values = {
        "arm": "car_t",
        "day0": DAY0,
        "disease_burden": "morphologic",
        "bm_blast_pct": 40,
        "relapse_status": "first_relapse",
    }
    return services.record_create(Treatment, user=user, patient=patient, **(values | fields))
