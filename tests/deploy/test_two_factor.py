"""Two-factor sign-in (TOTP) for data managers and administrators, when the setting asks for it."""

from __future__ import annotations

import time

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def two_factor_required(settings):
    settings.IMMUNOREG_REQUIRE_2FA = True


def code(device: TOTPDevice, *, offset: int = 0) -> str:
    """The code an authenticator app shows now (offset: that many steps later)."""
    return (
        f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift + offset):06d}"
    )


def sign_in(client, username: str):
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD})


@pytest.mark.parametrize("username", ["nurse", "pi"])
def test_nurses_and_pis_sign_in_with_their_password_alone(client, users, username):
    sign_in(client, username)

    assert client.get("/worklist/").status_code == 200


def test_a_data_manager_without_a_device_must_enrol_one_first(client, data_manager):
    sign_in(client, "data_manager")

    answer = client.get("/worklist/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/otp/setup/")
    page = client.get(answer["Location"])
    assert page.status_code == 200 and "otpauth://totp/" in page.content.decode()
    assert client.get("/api/v1/patients/").status_code == 403
    assert client.get("/admin/").status_code == 302

    device = TOTPDevice.objects.get(user=data_manager, confirmed=False)
    confirmed = client.post("/accounts/otp/setup/", {"token": code(device), "next": "/worklist/"})

    assert confirmed.status_code == 302 and confirmed["Location"] == "/worklist/"
    assert client.get("/worklist/").status_code == 200
    assert client.get("/admin/").status_code == 200


def test_an_enrolled_administrator_gives_a_code_at_each_sign_in(client, administrator):
    device = TOTPDevice.objects.create(user=administrator, name="phone", confirmed=True)
    sign_in(client, "administrator")

    answer = client.get("/admin/")
    assert answer["Location"].startswith("/accounts/otp/verify/")
    wrong = client.post("/accounts/otp/verify/", {"token": "000000"})
    assert wrong.status_code == 200 and "not valid" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302

    time.sleep(1.1)  # django-otp throttles: a second after one wrong code
    client.post("/accounts/otp/verify/", {"token": code(device)})
    assert client.get("/admin/").status_code == 200


def test_without_the_setting_nobody_is_asked_for_a_code(client, data_manager, settings):
    settings.IMMUNOREG_REQUIRE_2FA = False
    sign_in(client, "data_manager")

    assert client.get("/worklist/").status_code == 200
