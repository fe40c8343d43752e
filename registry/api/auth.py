"""API keys (registry.models.ApiToken): made here, checked on every API request.

`Authorization: Token <key>` as before; the key is looked up by its SHA-256 digest (a random
256-bit key needs no salt or slow hash: it cannot be guessed from a dictionary), an expired key
is refused (401), and a read-only key is refused any write (403), whatever the view allows.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.authentication import TokenAuthentication

from registry.models import ApiToken, User


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(
    *, user: User, name: str = "", read_only: bool = False, days: int | None = None
) -> tuple[ApiToken, str]:
    """A new key for `user`, valid for `days` (IMMUNOREG_API_TOKEN_DAYS by default): the token
    row, and the key itself, which is never stored and cannot be shown again."""
    days = settings.IMMUNOREG_API_TOKEN_DAYS if days is None else days
    if days < 1:
        raise ValueError("an API token is valid for at least one day")
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        read_only=read_only,
        prefix=key[:8],
        digest=digest_of(key),
        expires_at=timezone.now() + timedelta(days=days),
    )
    return token, key


class ApiTokenAuthentication(TokenAuthentication):
    model = ApiToken

    def authenticate(self, request):
        signed_in = super().authenticate(request)
        if signed_in is not None:
            token = signed_in[1]
            if token.read_only and request.method not in permissions.SAFE_METHODS:
                raise exceptions.PermissionDenied(_("This API token may only read."))
        return signed_in

    def authenticate_credentials(self, key: str):
        token = ApiToken.objects.select_related("user").filter(digest=digest_of(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if token.expired:
            raise exceptions.AuthenticationFailed(
                _("This API token has expired: ask an administrator for a new one.")
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
