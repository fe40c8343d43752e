"""Reads: every queryset a user sees is filtered to their sites here, not in each view."""

from __future__ import annotations

from django.db.models import Model, QuerySet

from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.permissions import user_site_ids

# How each kind of record reaches the site it belongs to.
SITE_PATH: dict[type[Model], str] = {
    Patient: "site",
    Treatment: "patient__site",
    Death: "patient__site",
    DataQualityQuery: "patient__site",
    CrsEpisode: "treatment__patient__site",
    IcansEpisode: "treatment__patient__site",
    ResponseAssessment: "treatment__patient__site",
    Transplant: "treatment__patient__site",
    FollowUpContact: "treatment__patient__site",
    Relapse: "treatment__patient__site",
}


def scope_to_user(queryset: QuerySet, *, user) -> QuerySet:
    """The rows of this queryset that belong to the user's sites (all of them for admins)."""
    sites = user_site_ids(user)
    if sites is None:
        return queryset
    return queryset.filter(**{f"{SITE_PATH[queryset.model]}__in": sites})


def records_visible_to(model: type[Model], *, user) -> QuerySet:
    return scope_to_user(model.objects.all(), user=user)


def patients_visible_to(*, user) -> QuerySet[Patient]:
    return records_visible_to(Patient, user=user).select_related("site")


def site_id_of(record: Model) -> int:
    """The site a record belongs to, by the same paths the querysets use."""
    if isinstance(record, Patient):
        return record.site_id
    if isinstance(record, Death | DataQualityQuery | Treatment):
        return record.patient.site_id
    return record.treatment.patient.site_id


def open_queries(*, user) -> QuerySet[DataQualityQuery]:
    return (
        records_visible_to(DataQualityQuery, user=user)
        .filter(is_open=True)
        .select_related("patient", "patient__site")
    )
