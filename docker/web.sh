#!/bin/sh
# The web app: gunicorn serving config.wsgi on port 8000, behind the hospital's TLS proxy.
# One line per request is logged by the app itself (JSON, with its request id).
# --preload: the app (Django, and the analytics' pandas, SciPy, lifelines, matplotlib that its
# modules import) is loaded once, before the workers are forked; a worker replaced after its
# --max-requests is a fork, not 4-15 s of one core importing it all again while the other
# workers wait for that core (docs/PERFORMANCE.md), and the workers share its memory.
# config/gunicorn.py: a worker that stops normally skips Python's finalisation (about 210 ms of a
# core copying the memory it shared with the arbiter, at every --max-requests replacement).
exec gunicorn config.wsgi --config python:config.gunicorn --preload --bind 0.0.0.0:8000 --worker-class gthread --workers "${GUNICORN_WORKERS:-3}" --threads "${GUNICORN_THREADS:-4}" --timeout 120 --graceful-timeout 30 --max-requests 1000 --max-requests-jitter 100 --worker-tmp-dir /tmp --error-logfile -
