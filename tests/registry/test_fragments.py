"""registry.fragments and the tags that use it: a fragment rendered once is the text the template
gives at each request, for every key, language, context and script prefix."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import override_settings
from django.urls import set_script_prefix
from django.utils import translation

from registry import fragments
from registry.domain.vocabulary import Role
from registry.permissions import Action, can
from registry.templatetags.registry_tags import NAV_ACTIONS, add_record_links, nav_links
from tests.factories import SiteFactory, UserFactory

ADD = "registry/_add_record_links.html"


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("pk", [1, 7, 42, 10**9])
def test_a_keyed_fragment_is_the_template_rendered_with_its_key(language, pk):
    with translation.override(language):
        assert fragments.keyed(ADD, pk) == render_to_string(ADD, {"pk": pk})
        assert add_record_links(pk) == render_to_string(ADD, {"pk": pk})
        assert f"/records/{pk}/crs/new/" in add_record_links(pk)


def test_a_fragment_is_rendered_once_per_context_and_language():
    fragments._rendered.cache_clear()
    for _ in range(3):
        for pk in (1, 2, 3):
            with translation.override("en"):
                english = fragments.keyed(ADD, pk)
            with translation.override("zh-hans"):
                chinese = fragments.keyed(ADD, pk)
    assert fragments._rendered.cache_info().misses == 2
    assert "CRS episode" in english and "CRS episode" not in chinese
    with translation.override("en"):
        assert fragments.fragment("_nav_links.html", may=frozenset()) != fragments.fragment(
            "_nav_links.html", may=frozenset({"view"})
        )
    assert fragments._rendered.cache_info().misses == 4


def test_the_path_the_application_is_served_under_is_kept():
    set_script_prefix("/immunoreg/")
    try:
        assert "/immunoreg/records/5/crs/new/" in fragments.keyed(ADD, 5)
    finally:
        set_script_prefix("/")
    assert 'href="/records/5/crs/new/"' in fragments.keyed(ADD, 5)


@override_settings(DEBUG=True)
def test_while_debugging_a_fragment_is_rendered_at_each_use():
    fragments._rendered.cache_clear()
    assert fragments.keyed(ADD, 3) == render_to_string(ADD, {"pk": 3})
    assert fragments._rendered.cache_info().misses == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_header_links_what_the_user_may_follow(role, language):
    user = UserFactory(role=role)
    user.sites.add(SiteFactory())
    may = frozenset(action.value for action in NAV_ACTIONS if can(user, action))
    with translation.override(language):
        assert nav_links(user) == render_to_string("_nav_links.html", {"may": may})
        shown = nav_links(user)
    assert ("/worklist/" in shown) == can(user, Action.VIEW)
    assert ("/export/" in shown) == can(user, Action.EXPORT_DEIDENTIFIED)
    assert ("/admin/" in shown) == can(user, Action.ADMIN_SITE)


@pytest.mark.django_db
def test_the_header_links_nothing_for_someone_signed_out_or_without_a_site():
    from django.contrib.auth.models import AnonymousUser

    assert "href" not in nav_links(AnonymousUser())
    assert "href" not in nav_links(None)
    assert "/worklist/" not in nav_links(UserFactory(role=Role.NURSE))  # no site of theirs


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_language_menu_selects_the_language_of_the_page(language):
    from registry.templatetags.registry_tags import language_select

    with translation.override(language):
        shown = language_select()
        assert shown == render_to_string("_language_select.html")
    assert f'<option value="{language}" selected>' in shown
    assert shown.count(" selected>") == 1
