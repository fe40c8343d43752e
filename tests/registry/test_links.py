"""registry.links and `{% link %}`: the same text as Django's reverse and `{% url %}`, whatever
the integers, the other arguments and the path the application is served under."""

from __future__ import annotations

import pytest
from django.template import engines
from django.test import override_settings
from django.urls import NoReverseMatch, path, register_converter, reverse, set_script_prefix

from registry.links import link, link_maker

ROUTES = [
    ("patient-detail", [7]),
    ("record-new", [42, "contact"]),
    ("record-edit", ["crs", 10**9]),
    ("treatment-labs", [1]),
    ("analytics:computation", [3]),
    ("patients", []),
]


@pytest.mark.parametrize(("route", "args"), ROUTES)
def test_a_link_is_the_reversed_route(route, args):
    assert link(route, *args) == reverse(route, args=args)


@pytest.mark.parametrize("pk", [1, 7, 42, 10**9])
def test_each_primary_key_gets_its_own_link(pk):
    assert link_maker("patient-detail")(pk) == reverse("patient-detail", args=[pk])
    assert link_maker("record-new", "contact")(pk) == reverse("record-new", args=[pk, "contact"])
    assert link("record-edit", "icans", pk) == reverse("record-edit", args=["icans", pk])


def test_the_path_the_application_is_served_under_is_kept():
    before = link("patient-detail", 5)
    set_script_prefix("/immunoreg/")
    try:
        assert link("patient-detail", 5) == reverse("patient-detail", args=[5])
        assert link("patient-detail", 5).startswith("/immunoreg/")
    finally:
        set_script_prefix("/")
    assert link("patient-detail", 5) == before == reverse("patient-detail", args=[5])


def test_a_route_that_does_not_match_is_refused_as_reverse_refuses_it():
    with pytest.raises(NoReverseMatch):
        link("record-edit", 5, "crs")  # the kind and the key swapped
    with pytest.raises(NoReverseMatch):
        link("no-such-route", 5)


class Hexadecimal:
    """A converter that writes an integer otherwise than its digits."""

    regex = "[0-9a-f]+"

    def to_python(self, value: str) -> int:
        return int(value, 16)

    def to_url(self, value: int) -> str:
        return f"{value:x}"


register_converter(Hexadecimal, "hexadecimal")
urlpatterns = [path("thing/<hexadecimal:pk>/", lambda request, pk: None, name="hex-thing")]


@override_settings(ROOT_URLCONF=__name__)
def test_a_route_that_rewrites_its_integer_is_refused_rather_than_mislinked():
    with pytest.raises(ValueError, match="hex-thing"):
        link("hex-thing", 255)


@pytest.mark.parametrize(
    ("tag", "args"),
    [
        ("'record-edit' kind pk", ["crs", 12]),
        ("'record-new' pk 'treatment'", [12, "treatment"]),
        ("'patient-detail' pk", [12]),
    ],
)
def test_the_tag_writes_what_the_url_tag_writes(tag, args):
    engine = engines["django"]
    context = {"kind": "crs", "pk": 12}
    ours = engine.from_string("{% load registry_tags %}{% link " + tag + " %}").render(context)
    django = engine.from_string("{% url " + tag + " %}").render(context)
    assert ours == django == reverse(tag.split()[0].strip("'"), args=args)


@pytest.mark.parametrize("name", ["css/immunoreg.css", "vendor/htmx-2.0.11.min.js", "favicon.svg"])
def test_an_asset_is_the_static_files_url(name):
    from django.contrib.staticfiles.storage import staticfiles_storage

    from registry.links import asset

    assert asset(name) == staticfiles_storage.url(name)
    rendered = engines["django"].from_string(f"{{% load registry_tags %}}{{% asset '{name}' %}}")
    assert rendered.render({}) == engines["django"].from_string(
        f"{{% load static %}}{{% static '{name}' %}}"
    ).render({})


def test_an_asset_follows_the_static_url():
    from registry.links import asset

    before = asset("css/immunoreg.css")
    with override_settings(STATIC_URL="/assets/"):
        assert asset("css/immunoreg.css") == "/assets/css/immunoreg.css"
    assert asset("css/immunoreg.css") == before
