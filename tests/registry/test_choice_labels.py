"""get_FOO_display() (registry.models.base.ChoiceLabels): the label of the value, in the language
of the moment, from a table built once per field and language, on every model of ours that has
choices."""

from __future__ import annotations

from django.apps import apps
from django.utils import translation

from registry.models import CrsEpisode, Treatment, User
from registry.models.base import ChoiceLabels, _choice_labels


def test_the_label_is_in_the_language_of_the_moment_and_each_table_is_built_once():
    treatment = Treatment(arm="car_t", crs_status="unknown")
    _choice_labels.cache_clear()
    for _ in range(2):
        with translation.override("en"):
            assert treatment.get_arm_display() == "CAR-T"
            assert User(role="nurse").get_role_display() == "Research nurse"
        with translation.override("zh-hans"):
            assert User(role="nurse").get_role_display() == "研究护士"
            assert treatment.get_arm_display() == "CAR-T"
    assert _choice_labels.cache_info().misses == 4  # two fields, two languages
    with translation.override("en"):
        assert User(role="nurse").get_role_display() == "Research nurse"  # not the last one's
    labels = _choice_labels(User._meta.get_field("role"), "zh-hans")
    assert all(type(label) is str for label in labels.values())  # translated once, not lazy


def test_a_value_without_a_label_is_shown_as_it_is_and_none_as_none():
    assert Treatment(arm="something else").get_arm_display() == "something else"
    assert CrsEpisode(oxygen=None).get_oxygen_display() is None


def test_every_model_of_ours_with_choices_reads_its_labels_from_the_table():
    """The historical models of django-simple-history are made by it and are not listed."""
    slow = [
        model.__name__
        for model in apps.get_models()
        if model.__module__.split(".")[0] in ("registry", "analytics")
        and not model.__name__.startswith("Historical")
        and any(field.choices for field in model._meta.concrete_fields)
        and not issubclass(model, ChoiceLabels)
    ]
    assert slow == []
