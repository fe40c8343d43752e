#!/bin/sh
# The Celery worker: analytics, monthly reports, the outbox's work. Tasks are acknowledged only
# when done (late acks), so a worker that dies hands its task to the next one.
exec celery -A config worker --loglevel "${LOG_LEVEL:-INFO}" --concurrency "${CELERY_WORKER_CONCURRENCY:-2}" --hostname "worker@%h" --without-gossip --without-mingle
