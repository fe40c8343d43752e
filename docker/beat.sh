#!/bin/sh
# Celery beat: sends the scheduled tasks kept in the database (django-celery-beat, editable in
# the admin): the nightly analytics and queries, the monthly reports, the outbox every minute.
exec celery -A config beat --loglevel "${LOG_LEVEL:-INFO}" --scheduler django_celery_beat.schedulers:DatabaseScheduler --pidfile=
