from __future__ import annotations

import os

import pytest
from django.utils import translation
from hypothesis import settings

from registry.domain.vocabulary import Role
from tests import factories

# Property tests are judged by their examples, not their speed: on a shared 2-core machine a
# first call can exceed hypothesis's 200 ms deadline and fail a correct test.
settings.register_profile("immunoreg", deadline=None)
settings.load_profile("immunoreg")


@pytest.fixture(scope="session")
def idle_database_sessions_ended_last(django_db_setup, django_db_blocker):
    """A live server's request threads can leave idle database sessions behind them, and
    PostgreSQL then refuses to drop the test database at the end of the run. They are ended
    once every test has run, never at the end of a module: under Playwright's sync API the
    tests' own connection is one of those idle sessions, and ending it then broke the first
    test of the next module ("terminating connection due to administrator command")."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state = 'idle'"
            )


@pytest.fixture(scope="session", autouse=True)
def media_folder_of_this_run(tmp_path_factory):
    """Each run, and each of its processes (pytest-xdist), writes its files (reports, exports)
    in a folder of its own, empty at the start: the archive never replaces a file, so a folder
    kept from an earlier run would refuse this run's report 1 (and the developer's own
    var/media is never touched)."""
    from django.test import override_settings

    with override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("media"))):
        yield


@pytest.fixture
def site(db):
    return factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")


@pytest.fixture
def other_site(db):
    return factories.SiteFactory(code="XHC", name="Xinhua Hospital")


@pytest.fixture
def users(site, other_site):
    """One user per role at `site`; the administrator sees every site."""
    return {
        role: factories.UserFactory(
            username=role.value, role=role, sites=[site], is_superuser=False
        )
        for role in Role
    }


@pytest.fixture
def nurse(users):
    return users[Role.NURSE]


@pytest.fixture
def data_manager(users):
    return users[Role.DATA_MANAGER]


@pytest.fixture
def administrator(users):
    return users[Role.ADMINISTRATOR]


@pytest.fixture
def patient(nurse, site):
    return factories.patient(user=nurse, site=site)


@pytest.fixture
def treatment(nurse, patient):
    return factories.treatment(user=nurse, patient=patient)


def pytest_sessionfinish(session, exitstatus):
    """In CI nothing may be skipped: a skipped test there fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter and reporter.stats.get("skipped"):
        reporter.write_line(f"CI: {len(reporter.stats['skipped'])} tests were skipped; failing.")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def no_language_leaks_between_tests():
    """A test that activates a language (a request, a task, a report) leaves none behind."""
    yield
    translation.deactivate()
