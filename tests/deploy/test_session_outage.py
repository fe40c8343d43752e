"""A database outage while the session is saved after the view is a 503 that asks to check."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_session_save_cut_by_the_database_answers_503_not_400(client, nurse, settings):
    settings.SESSION_SAVE_EVERY_REQUEST = True  # as in production: saved after every view
    client.force_login(nurse)
    with mock.patch.object(SessionStore, "save", side_effect=_update_error):
        response = client.get(reverse("worklist"))
    assert response.status_code == 503
    assert "may have been saved" in response.content.decode()


def _update_error(*args, **kwargs):
    from django.contrib.sessions.backends.base import UpdateError

    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError as lost:
        raise UpdateError from lost
