"""The authentication backend (AUTHENTICATION_BACKENDS): Django's ModelBackend, the signed-in
user read at every request by one plain SELECT instead of a compiled queryset.

Signing in, passwords and permissions are Django's own. Only `get_user`, which every signed-in
request calls once its session is read, reads the user's row directly (registry.rows): through
the ORM it cost twice the database's answer (docs/PERFORMANCE.md, session 11). The user is
refused as Django refuses one: no such user, or one who may not sign in (deactivated).
"""

from __future__ import annotations

from django.contrib.auth import backends, get_user_model
from django.core.exceptions import ValidationError

from registry.rows import each_result, instances, read_cursor, select_sql


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        with read_cursor() as cursor:
            statement = select_sql(model, f"{model._meta.pk.column} = %s", "1")
            [rows] = each_result(cursor, [(statement, [pk])])
        found = instances(model, rows)
        if not found or not self.user_can_authenticate(found[0]):
            return None
        return found[0]
