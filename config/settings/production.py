"""Production settings: everything secret or site-specific comes from the environment.

`manage.py check --deploy` passes with no warning (tests/deploy/test_settings.py).
"""

from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from .base import *  # noqa: F403
from .base import DATABASES, SECRET_KEY, STORAGES, env, logging_config

if SECRET_KEY.startswith("insecure-"):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")

IMMUNOREG_PRODUCTION = True
DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the containers' own health check speaks plain HTTP
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # htmx reads the token from the page, never from the cookie
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Signed out after 30 minutes without a request (inactivity), and when the browser closes.
# The timeout counts from the last request: the session is saved again (its expiry moved on)
# once a minute at most while requests come (registry.middleware.SessionMiddleware), not
# after every request.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = False
IMMUNOREG_SESSION_REFRESH_SECONDS = env.int("IMMUNOREG_SESSION_REFRESH_SECONDS", default=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Data managers and administrators sign in with a second factor unless the hospital turns it off.
IMMUNOREG_REQUIRE_2FA = env.bool("IMMUNOREG_REQUIRE_2FA", default=True)

# Connections are kept between requests and checked before reuse, so that a database restart
# costs the requests during the outage (503) and nothing after it.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)

# Source maps are read only by a browser's developer tools: served as they are, not compressed
# (compressing the API documentation's 6 MB of them took most of collectstatic's time).
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = logging_config(
    json_lines=env("LOG_FORMAT", default="json") == "json", level=env("LOG_LEVEL", default="INFO")
)

# Optional error reporting (Sentry or a compatible service such as GlitchTip): set SENTRY_DSN.
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    from config.logging import init_error_reporting

    init_error_reporting(SENTRY_DSN, environment=env("SENTRY_ENVIRONMENT", default="production"))
