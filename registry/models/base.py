"""What every clinical record shares: a version for optimistic concurrency, and its history."""

from __future__ import annotations

import functools

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.encoding import force_str
from django.utils.hashable import make_hashable
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from registry.domain.identifiers import odd_characters

# A percentage of cells: 0-100.
PERCENT = {"validators": [MinValueValidator(0), MaxValueValidator(100)]}


def validate_identifier(value: str) -> None:
    """A study ID or site code holds no invisible or control character and no letter that only
    looks like a Latin one (registry.domain.identifiers): refused, never silently kept."""
    odd = odd_characters(value)
    if odd:
        raise ValidationError(
            _(
                "This identifier contains characters that are invisible or only look like "
                "letters or a hyphen (%(characters)s): type it again with plain letters, digits "
                "and hyphens."
            ),
            code="odd_characters",
            params={"characters": ", ".join(odd)},
        )


@functools.cache
def _choice_labels(field: models.Field, language: str | None) -> dict:
    """A field's value -> label, translated into this language (the one active when asked)."""
    return {
        value: force_str(label, strings_only=True)
        for value, label in make_hashable(field.flatchoices)
    }


class ChoiceLabels(models.Model):
    """`get_FOO_display()` from a table built once per field and language. Django builds the
    table again at each call, hashing every label of the field, which translates each one: on
    the patient page, about 190 translations for some 30 labels shown (docs/PERFORMANCE.md);
    translating the one label shown was still a twentieth of the page. The same label, in the
    language of the moment; a field's choices and a language's catalogue are fixed when the
    process loads them."""

    class Meta:
        abstract = True

    def _get_FIELD_display(self, field: models.Field) -> str:
        return choice_label(self, field, get_language())


def choice_label(record: models.Model, field: models.Field, language: str | None) -> str:
    """`record.get_FOO_display()` in this language (the active one), for a caller that showing
    many labels looks the language up once (registry.timeline_html)."""
    value = getattr(record, field.attname)
    label = _choice_labels(field, language).get(make_hashable(value), value)
    return force_str(label, strings_only=True)


class ClinicalRecord(ChoiceLabels):
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    history = HistoricalRecords(inherit=True)

    class Meta:
        abstract = True

    @property
    def patient(self):  # overridden by Patient; every other record reaches its patient
        return self.treatment.patient

    def validate_constraints(self, exclude=None) -> None:
        """Not Django's check of the constraints, which reports a violation as a generic
        "Constraint ... is violated" above the form, in English whatever the page's language:
        each constraint has its rule with a field message in the user's language
        (registry.validation.CONSTRAINT_RULES), applied by registry.services on every write
        path, and the database still refuses what would slip past."""
