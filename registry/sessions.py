"""The session engine (SESSION_ENGINE): Django's database sessions, the session read at every
request by one plain SELECT instead of a compiled queryset.

Every signed-in page reads its session first. Through the ORM that read cost twice the
database's answer (docs/PERFORMANCE.md, session 11); here it is the same statement Django sends,
the same table, rows and expiry, so sessions written by either are read by both.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.db import connection
from django.utils import timezone

from registry.rows import each_result


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        """The session's row if it has not expired, as Django's reads it; None, and the key
        forgotten (a new session is made if one is saved), when there is none."""
        model = self.model
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        data, key, expiry = (
            quote(model._meta.get_field(name).column)
            for name in ("session_data", "session_key", "expire_date")
        )
        with connection.cursor() as cursor:
            statement = f"SELECT {data} FROM {table} WHERE {key} = %s AND {expiry} > %s"
            [rows] = each_result(cursor, [(statement, [self.session_key, timezone.now()])])
        if not rows:
            self._session_key = None
            return None
        return model(session_key=self.session_key, session_data=rows[0][0])
