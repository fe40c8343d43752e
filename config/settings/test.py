"""Settings for the test suite: same as base, with fast password hashing."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False

# Each test process its own cache, whatever CACHE_URL a developer's .env sets: the parallel test
# processes' databases number their sites alike. The shared Redis cache is tested on its own
# (tests/registry/test_worklist_shared_cache.py), under a key prefix of its own.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
