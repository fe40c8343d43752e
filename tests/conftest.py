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
