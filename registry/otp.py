"""Two-factor sign-in (TOTP, django-otp) for data managers and administrators.

With IMMUNOREG_REQUIRE_2FA on, a data manager or administrator who signed in with a password is
sent to verify a code from their authenticator app before anything else, or, the first time, to
enrol one (the secret shown once, as text and as a QR code). Nurses and PIs are not asked.
API requests of an unverified session get 403; API tokens are issued by administrators and are
not affected.
"""

from __future__ import annotations

from base64 import b32encode
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, path, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry.domain.vocabulary import Role

# Pages an unverified user may still reach: the two below, signing out, the health check.
OPEN_URL_NAMES = frozenset({"otp-verify", "otp-setup", "login", "logout", "healthz"})


def two_factor_required(user) -> bool:
    return bool(
        settings.IMMUNOREG_REQUIRE_2FA
        and user.is_authenticated
        and (user.is_administrator or user.role == Role.DATA_MANAGER)
    )


def _is_open(request: HttpRequest) -> bool:
    try:
        return resolve(request.path_info).url_name in OPEN_URL_NAMES
    except Resolver404:
        return False


class TwoFactorRequiredMiddleware:
    """After django_otp's OTPMiddleware: unverified data managers and administrators go to the
    code page (or, without a device, the enrolment page) first."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if two_factor_required(user) and not user.is_verified() and not _is_open(request):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {"detail": _("Verify your sign-in with your authenticator app first.")},
                    status=403,
                )
            page = "otp-verify" if user_has_device(user, confirmed=True) else "otp-setup"
            return redirect(f"{reverse(page)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


class TokenForm(forms.Form):
    token = forms.CharField(
        label=gettext_lazy("Code from your authenticator app"),
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


@login_required
def otp_verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in: a code from the enrolled authenticator app."""
    if not user_has_device(request.user, confirmed=True):
        return redirect(f"{reverse('otp-setup')}?{urlencode({'next': _next(request)})}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["token"].strip())
        if device is not None:
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error(
            "token", _("That code is not valid (or was already used); try the next one.")
        )
    return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})


@login_required
def otp_setup(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator app: scan the QR code (or type the secret), then give a code."""
    if user_has_device(request.user, confirmed=True) and not request.user.is_verified():
        return redirect(f"{reverse('otp-verify')}?{urlencode({'next': _next(request)})}")
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(
            user=request.user, name=_("authenticator app"), confirmed=False
        )
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("token", _("That code is not valid; check the time on your phone."))
    context = {
        "form": form,
        "next": _next(request),
        "secret": b32encode(device.bin_key).decode(),
        "otpauth_url": device.config_url,
        "qr_code": segno.make(device.config_url, error="m").svg_data_uri(scale=4),
    }
    return render(request, "registration/otp_setup.html", context)


urlpatterns = [
    path("verify/", otp_verify, name="otp-verify"),
    path("setup/", otp_setup, name="otp-setup"),
]
