"""Keys for scripts that call the REST API."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ApiToken(models.Model):
    """An API key, kept as its SHA-256 digest only: the key itself is shown once, when it is
    made (registry.api.auth.api_token_create), and a copy of the database gives none away. It
    expires, and a read-only one is refused every write (403)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(_("what it is for"), max_length=100, blank=True)
    # The key's first characters: enough to tell a user's keys apart, useless to sign in.
    prefix = models.CharField(_("starts with"), max_length=8, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(_("read only"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()
