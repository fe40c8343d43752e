"""The session and the signed-in user, read at every request by plain SQL (registry.sessions,
registry.auth_backends): the same answers as Django's database sessions and ModelBackend, in
one query each."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.auth_backends import ModelBackend
from registry.sessions import SessionStore
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_settings_name_them():
    assert settings.SESSION_ENGINE == "registry.sessions"
    assert "registry.auth_backends.ModelBackend" in settings.AUTHENTICATION_BACKENDS
    assert "django.contrib.auth.backends.ModelBackend" not in settings.AUTHENTICATION_BACKENDS


def test_a_session_reads_as_djangos_in_one_query():
    written = DjangoSessionStore()
    written.update({"a": 1, "name": "注册", "when": "2024-10-31"})
    written.create()
    with CaptureQueriesContext(connection) as queries:
        read = SessionStore(written.session_key).load()
    assert read == DjangoSessionStore(written.session_key).load() == written.load()
    assert len(queries) == 1


def test_what_this_store_writes_django_reads():
    store = SessionStore()
    store["x"] = [1, 2]
    store.create()
    assert DjangoSessionStore(store.session_key).load() == {"x": [1, 2]}


def test_an_expired_session_reads_empty_and_its_key_is_forgotten():
    store = SessionStore()
    store["x"] = 1
    store.create()
    Session.objects.filter(session_key=store.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    again = SessionStore(store.session_key)
    assert again.load() == {}
    assert again.session_key is None  # a save makes a new session, never revives this one


def test_an_unknown_key_reads_empty():
    store = SessionStore("k" * 32)
    assert store.load() == {}
    assert store.session_key is None


def test_a_tampered_session_reads_empty():
    store = SessionStore()
    store["x"] = 1
    store.create()
    Session.objects.filter(session_key=store.session_key).update(session_data="forged:data")
    assert SessionStore(store.session_key).load() == {}


def test_the_user_is_the_one_djangos_backend_gives_in_one_query():
    user = UserFactory(first_name="Lin", last_name="Wei", language="zh-hans")
    with CaptureQueriesContext(connection) as queries:
        read = ModelBackend().get_user(str(user.pk))
    assert len(queries) == 1
    django_read = DjangoModelBackend().get_user(user.pk)
    fields = [f.attname for f in type(user)._meta.concrete_fields]
    assert {f: getattr(read, f) for f in fields} == {f: getattr(django_read, f) for f in fields}
    assert read.get_session_auth_hash() == user.get_session_auth_hash()
    assert read._state.adding is False and read._state.db == "default"


@pytest.mark.parametrize("user_id", ["999999", "not-a-number", "", None])
def test_no_such_user_is_no_user(user_id):
    UserFactory()
    assert ModelBackend().get_user(user_id) is None


def test_a_deactivated_user_is_refused():
    user = UserFactory(is_active=False)
    assert ModelBackend().get_user(str(user.pk)) is None


def sign_in(client, user, backend: str) -> None:
    """A session written by this store, signed in through `backend`, as the client's cookie."""
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = backend
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key


def test_a_signed_in_request_reads_its_session_and_user(client):
    """Through the middleware, as every page does: the session this store wrote, the user this
    backend read; deactivated meanwhile, the next request is signed out."""
    user = UserFactory()
    sign_in(client, user, "registry.auth_backends.ModelBackend")
    assert client.get("/patients/").status_code == 200
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    response = client.get("/patients/")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_a_session_signed_in_through_djangos_backend_is_signed_out(client):
    """Its backend is no longer one of the settings' (a session from before the upgrade): the
    person signs in again, as Django does for any backend removed from the settings."""
    user = UserFactory()
    sign_in(client, user, "django.contrib.auth.backends.ModelBackend")
    assert client.get("/patients/").status_code == 302


# --- The user handed to the view as itself (registry.middleware.LoadedUserMiddleware) -----------
def _user_seen_by_the_view(rf, session) -> object:
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.http import HttpResponse
    from django_otp.middleware import OTPMiddleware

    from registry.middleware import LoadedUserMiddleware

    seen = []

    def view(request):
        seen.append(request.user)
        return HttpResponse()

    request = rf.get("/")
    request.session = session
    AuthenticationMiddleware(OTPMiddleware(LoadedUserMiddleware(view)))(request)
    return seen[0]


def test_the_view_gets_the_signed_in_user_itself_with_its_two_factor_state(rf, client):
    from django.utils.functional import LazyObject

    from registry.models import User

    user = UserFactory()
    client.force_login(user)
    seen = _user_seen_by_the_view(rf, client.session)
    assert type(seen) is User and not isinstance(seen, LazyObject)
    assert seen.pk == user.pk and seen.is_authenticated
    assert seen.otp_device is None and seen.is_verified() is False  # set by django-otp


def test_the_view_gets_an_anonymous_user_itself(rf):
    from django.contrib.auth.models import AnonymousUser

    seen = _user_seen_by_the_view(rf, SessionStore())
    assert type(seen) is AnonymousUser and not seen.is_authenticated and not seen.is_verified()


def test_the_middleware_hands_on_the_user_after_the_two_factor_check():
    order = settings.MIDDLEWARE
    assert (
        order.index("registry.middleware.LoadedUserMiddleware")
        > order.index("registry.otp.TwoFactorRequiredMiddleware")
        > order.index("django_otp.middleware.OTPMiddleware")
    )
