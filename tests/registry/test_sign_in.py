"""Signing in does its work once: one password check, no extra version of the user in the
audit trail, a fixed number of queries for the sign-in and the first page."""

from __future__ import annotations

import pytest
from django.contrib.auth import hashers
from django.urls import reverse

from registry.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def sign_in(client, username: str):
    return client.post(reverse("login"), {"username": username, "password": PASSWORD})


def test_a_sign_in_checks_the_password_once(client, nurse, monkeypatch):
    checks: list[str] = []
    verify = hashers.MD5PasswordHasher.verify

    def counted(self, password, encoded):
        checks.append(password)
        return verify(self, password, encoded)

    monkeypatch.setattr(hashers.MD5PasswordHasher, "verify", counted)
    assert sign_in(client, nurse.username).status_code == 302
    assert len(checks) == 1


def test_a_sign_in_saves_last_login_without_a_new_version_of_the_user(client, nurse):
    versions = nurse.history.count()
    assert sign_in(client, nurse.username).status_code == 302
    nurse.refresh_from_db()
    assert nurse.last_login is not None
    assert nurse.history.count() == versions


def test_an_edit_of_a_user_is_still_a_version(nurse):
    versions = nurse.history.count()
    nurse.first_name = "Li"
    nurse.save()
    assert nurse.history.count() == versions + 1
    assert User.history.filter(id=nurse.pk).latest().first_name == "Li"


def test_the_sign_in_and_the_first_page_cost_a_fixed_number_of_queries(
    client, nurse, patient, django_assert_max_num_queries
):
    with django_assert_max_num_queries(20):
        response = sign_in(client, nurse.username)
    assert response.status_code == 302
    with django_assert_max_num_queries(20):
        landing = client.get(response["Location"], follow=True)
    assert landing.status_code == 200
