"""Sites and the people who work at them."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from registry.domain.identifiers import identifier_key
from registry.domain.vocabulary import Role

from . import choices
from .base import ChoiceLabels, validate_identifier


def new_data_token() -> str:
    return uuid.uuid4().hex


class Site(models.Model):
    code = models.CharField(_("code"), max_length=16, unique=True, validators=[validate_identifier])
    name = models.CharField(_("name"), max_length=200)
    # Changes (to a new random value) with every write of the site's clinical data, in the
    # write's transaction: pages computed from that data are cached under it (the worklist).
    data_token = models.CharField(max_length=32, default=new_data_token, editable=False)
    # One more with every such write (the site's row is locked by it until the write commits,
    # so the versions of a site follow the order of its writes); each write records which
    # patients it changed (WorklistChange), or, when it cannot name them, starts the worklist
    # afresh (worklist_reset_version): registry.selectors.worklist_for recomputes only those.
    data_version = models.BigIntegerField(default=0, editable=False)
    worklist_reset_version = models.BigIntegerField(default=0, editable=False)
    history = HistoricalRecords(
        excluded_fields=["data_token", "data_version", "worklist_reset_version"]
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("site")
        verbose_name_plural = _("sites")

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        """A code that only looks different from another site's is that site's code."""
        super().clean()
        if not self.code:
            return
        key = identifier_key(self.code)
        for code in Site.objects.exclude(pk=self.pk).values_list("code", flat=True):
            if identifier_key(code) == key:
                raise ValidationError(
                    {
                        "code": _("Site %(code)s already has this code (written differently).")
                        % {"code": code}
                    }
                )


class User(AbstractUser, ChoiceLabels):
    """A registry user: one role, scoped to the sites they work at (administrators: all)."""

    role = models.CharField(_("role"), max_length=20, choices=choices.ROLE, default=Role.NURSE)
    sites = models.ManyToManyField(Site, blank=True, related_name="users", verbose_name=_("sites"))
    language = models.CharField(_("language"), max_length=10, blank=True, default="")
    history = HistoricalRecords(excluded_fields=["last_login", "password"])

    @property
    def is_administrator(self) -> bool:
        return self.is_superuser or self.role == Role.ADMINISTRATOR

    def has_perm(self, perm, obj=None) -> bool:
        # Administrators may do everything (INTERFACES.md section 5), in the admin too.
        return (self.is_active and self.is_administrator) or super().has_perm(perm, obj)

    def has_module_perms(self, app_label) -> bool:
        return (self.is_active and self.is_administrator) or super().has_module_perms(app_label)

    def save(self, *args, **kwargs) -> None:
        # The admin site is for data managers and administrators only (INTERFACES.md section 5).
        self.is_staff = self.is_superuser or self.role in (Role.DATA_MANAGER, Role.ADMINISTRATOR)
        super().save(*args, **kwargs)


class WorklistChange(models.Model):
    """The latest version of its site's data (Site.data_version) that changed a patient's data:
    written in the write's own transaction (registry.services.patients_changed). No foreign key
    to the patient: a deleted patient, or one moved to another site, is recorded too."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    patient_id = models.BigIntegerField()
    version = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "patient_id"], name="worklist_change_one_per_patient"
            )
        ]
        indexes = [models.Index(fields=["site", "version"], name="worklist_change_since")]

    def __str__(self) -> str:
        return f"{self.site_id}:{self.patient_id}@{self.version}"
