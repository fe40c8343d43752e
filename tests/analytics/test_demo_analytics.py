"""After `make demo`, every demo user who may see analytics finds every scope they see computed,
and no page or message of the registry ever tells a user to run a command.

The demo is played as the Makefile plays it: a (small) demo cohort, then the analytics and
report commands of the Makefile's demo recipe, read from the Makefile itself.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation

from analytics import queue, services
from analytics.models import RenderingFailure, Snapshot, Status, Trigger
from analytics.report import services as report_services
from analytics.report.context import Month
from registry import demo
from registry.models import User
from registry.permissions import Action, can

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)
# Every command of the registry, and the word that runs them.
COMMAND_FILES = BASE_DIR.glob("*/management/commands/*.py")
COMMANDS = [*sorted({path.stem for path in COMMAND_FILES} - {"__init__"}), "manage.py"]
LANGUAGES = [code for code, _ in settings.LANGUAGES]


def demo_recipe_commands() -> list[list[str]]:
    """The management commands the Makefile's demo target runs after seeding, as argument
    lists (the value of an --out, a shell expression, left for the caller), runserver and
    collectstatic aside."""
    makefile = (BASE_DIR / "Makefile").read_text()
    recipe = re.search(r"^demo: migrate\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has a demo recipe"
    commands = []
    for line in recipe.group(1).splitlines():
        words = shlex.split(line.strip())
        if words[:1] == ["$(MANAGE)"] and words[1] not in ("runserver", "collectstatic"):
            if "--out" in words:
                words = [*words[: words.index("--out") + 1], "OUT"]
            commands.append(words[1:])
    return commands


def scope_url(site) -> str:
    return reverse("analytics:scope", args=["registry" if site is None else site.code])


@pytest.fixture(autouse=True)
def no_queued_computation_remembered():
    cache.clear()


@pytest.fixture
def demo_played(tmp_path, settings):
    """A small demo cohort, then what the Makefile's demo target runs."""
    settings.MEDIA_ROOT = tmp_path
    call_command("seed_demo", "--patients", "12", stdout=io.StringIO())
    ran = []
    for command in demo_recipe_commands():
        if command[0] == "render_report":
            out = command.index("--out")
            command[out + 1] = str(tmp_path / "report.pdf")
        call_command(*command, stdout=io.StringIO())
        ran.append(command[0])
    assert "compute_analytics" in ran and "render_report" in ran
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF-")


def test_after_the_demo_every_demo_user_sees_every_scope_of_theirs_computed(client, demo_played):
    users = User.objects.filter(username__in=[name for name, _, _ in demo.DEMO_USERS])
    assert users.count() == len(demo.DEMO_USERS)
    computed_before = Snapshot.objects.count()
    for user in users:
        client.force_login(user)
        index = client.get(reverse("analytics:index"))
        if not can(user, Action.ANALYTICS):
            assert index.status_code == 403 and user.role == "nurse"
            continue
        assert "Not computed yet" not in index.content.decode(), user.username
        scopes = services.scopes_visible_to(user)
        assert scopes, user.username
        for site in scopes:
            page = client.get(scope_url(site)).content.decode()
            snapshot = Snapshot.objects.latest_complete(site)
            assert snapshot is not None, (user.username, site)
            assert 'data-testid="provenance"' in page and snapshot.fingerprint in page
            assert 'data-testid="no-snapshot"' not in page
            assert snapshot.figures.count() > 0  # drawn with it, not when first shown
    assert Snapshot.objects.count() == computed_before  # nothing was left to compute


def test_the_nightly_run_computes_every_scope_anyone_may_see(users, site, other_site):
    demo.seed_scaled(12)
    services.snapshots_refresh_all(trigger=Trigger.NIGHTLY)
    for user in User.objects.all():
        for scope in services.scopes_visible_to(user):
            assert Snapshot.objects.latest_complete(scope) is not None, (user.username, scope)


# --- no page tells a user to run a command -------------------------------------------------


def test_no_template_names_a_command():
    for template in (BASE_DIR / "templates").rglob("*.html"):
        text = template.read_text()
        named = [command for command in COMMANDS if command in text]
        assert not named, f"{template.relative_to(BASE_DIR)} names {named}"


GETTEXT = {"_", "gettext", "gettext_lazy", "ngettext", "ngettext_lazy", "pgettext", "gettext_noop"}


def translatable_strings(path: Path) -> list[str]:
    strings = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in GETTEXT:
            strings += [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
    return [text for text in strings if isinstance(text, str)]


def test_no_message_for_users_names_a_command():
    """Every translatable text of the apps (what users read), the commands' own aside."""
    for package in ("registry", "analytics", "config"):
        for path in (BASE_DIR / package).rglob("*.py"):
            if "management" in path.parts or "migrations" in path.parts:
                continue
            for text in translatable_strings(path):
                named = [command for command in COMMANDS if command in text]
                assert not named, f"{path.relative_to(BASE_DIR)}: {text!r} names {named}"


@pytest.fixture
def nothing_sent(monkeypatch):
    """Work handed to a worker goes nowhere: the pages are seen while it waits."""
    for name in ("recompute", "compute-missing", "render-report"):
        monkeypatch.setitem(queue._senders, name, lambda **kwargs: None)


def analytics_pages(client, user, site) -> list[str]:
    client.force_login(user)
    urls = [reverse("analytics:index"), scope_url(site), reverse("analytics:reports")]
    if services.recompute_scopes(user):
        urls.append(reverse("analytics:recompute"))
    for snapshot in Snapshot.objects.all():
        if snapshot.site_id is None and None not in services.scopes_visible_to(user):
            continue
        urls.append(reverse("analytics:computation", args=[snapshot.pk]))
    for rendering in report_services.renderings_visible_to(user):
        urls.append(f"{reverse('analytics:reports')}?rendering={rendering.pk}")
    return [client.get(url, follow=True).content.decode() for url in urls]


def test_no_analytics_page_names_a_command_whatever_state_it_is_in(
    client, users, site, nothing_sent
):
    demo.seed_scaled(12)
    # A computation that failed with a message naming a command (the detail stays in the log)...
    failing = services.snapshot_claim(site=site, trigger=Trigger.ON_DEMAND)
    services._record_failure(failing, RuntimeError("run manage.py compute_analytics --site AHP"))
    # ... reports that failed or wait for a worker, a scope being computed for a first reader.
    month = Month.containing(demo.CUTOFF)
    for user in users.values():
        if not can(user, Action.ANALYTICS):
            continue
        rendering = report_services.rendering_request(
            user=user, site=site, month=month, language="en"
        )
        report_services.rendering_failed(rendering.pk, failure=RenderingFailure.ANALYTICS)
        report_services.rendering_request(user=user, site=site, month=month, language="en")
    pages = 0
    for language in LANGUAGES:
        for user in users.values():
            if not can(user, Action.ANALYTICS):
                continue
            user.language = language
            user.save(update_fields=["language"])
            for html in analytics_pages(client, user, site):
                named = [command for command in COMMANDS if command in html]
                assert not named, f"{user.username} ({language}) is told {named}"
                pages += 1
    assert pages > 20
    assert Snapshot.objects.filter(status=Status.RUNNING, site=site).exists()  # was computing
    translation.deactivate()
