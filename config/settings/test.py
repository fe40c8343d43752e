"""Settings for the test suite: same as base, with fast password hashing."""

import os

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False

# The suite never writes into the developer's media folder, and parallel test processes
# (pytest-xdist's gw0, gw1...) never write into each other's: each has its own.
MEDIA_ROOT = VAR_DIR / "test-media" / os.environ.get("PYTEST_XDIST_WORKER", "main")  # noqa: F405
