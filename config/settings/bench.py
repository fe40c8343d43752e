"""Production settings with the pages' floor of `make bench` (bench/floor.py) added: the same
middleware, sessions and database as production, one URL more. Never deployed."""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.floor"
