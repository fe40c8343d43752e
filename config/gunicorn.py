"""gunicorn's settings that its command line cannot give (docker/web.sh: `--config
python:config.gunicorn`): what a worker does as it stops."""

from __future__ import annotations

import logging
import os
import sys


def worker_exit(server, worker) -> None:
    """A worker that stops normally (replaced after its --max-requests, or at a shutdown) ends
    without Python's own finalisation, once its database connections are closed and its log
    written out. Finalising freed one by one every object the worker had inherited from the
    preloaded app, writing to each: about 210 ms of a core and 38,000 pages copied from the
    arbiter, while the other workers waited for that core (docs/PERFORMANCE.md, session 12).
    A worker that stops on a failure exits as gunicorn makes it, with its code for the arbiter
    (which stops on a worker that could not boot)."""
    stopping = sys.exc_info()[1]  # gunicorn calls this as the worker's SystemExit goes up
    if not isinstance(stopping, SystemExit) or stopping.code not in (0, None):
        return
    from django.db import connections

    connections.close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
