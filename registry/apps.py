from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = _("Registry")

    def ready(self) -> None:
        from django.contrib import admin
        from django.contrib.auth import user_logged_in
        from django.contrib.auth.models import update_last_login
        from django.db.models.signals import post_migrate

        from registry import checks  # noqa: F401 (registers the deployment's checks)
        from registry.admin_scope import scope_every_admin
        from registry.schedules import ensure_schedules

        # Every admin page, the other apps' too, scoped and read-only in its history alike
        # (registry/admin_scope.py): the admin modules of every app are loaded by now.
        scope_every_admin(admin.site)

        # The periodic work is put back after every migrate and flush (registry/schedules.py).
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="immunoreg_schedules")

        # A user's history leaves out last_login, so the version simple-history would write at
        # every sign-in is the same as the one before it: the sign-in is recorded by django-axes'
        # access log, and last_login is saved without a version.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
        user_logged_in.connect(last_login_saved_without_a_version, dispatch_uid="update_last_login")


def last_login_saved_without_a_version(sender, user, **kwargs) -> None:
    from django.contrib.auth.models import update_last_login

    user.skip_history_when_saving = True
    try:
        update_last_login(sender, user, **kwargs)
    finally:
        del user.skip_history_when_saving
