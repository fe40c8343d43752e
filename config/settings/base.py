"""Settings shared by every environment; everything that differs comes from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.utils.translation import gettext_lazy as _

from config.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("IMMUNOREG_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# True in production.py only: what must never run there (seed_demo) asks this.
IMMUNOREG_PRODUCTION = False

# Only the local demo may run without a secret: production.py refuses the default.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-demo-key-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from here, not from a CDN
    "django_filters",
    "django_celery_beat",
    "simple_history",
    "django_htmx",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "registry",
    "analytics",
]

MIDDLEWARE = [
    "registry.middleware.RequestIdMiddleware",  # first: its id is on every log line
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "registry.middleware.DatabaseUnavailableMiddleware",  # a clean 503, with the headers above
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "registry.middleware.NoStoreMiddleware",  # after WhiteNoise: static files stay cacheable
    "registry.middleware.SessionMiddleware",  # Django's, with an outage answered 503, not 400
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "registry.middleware.QueryStringMiddleware",  # a NUL in a query string: a 400, not a 500
    "django.middleware.csrf.CsrfViewMiddleware",
    "registry.middleware.UploadLimitMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "registry.otp.TwoFactorRequiredMiddleware",
    "registry.middleware.LoadedUserMiddleware",  # request.user itself, not behind two wrappers
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "registry.middleware.UserLanguageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "registry.context_processors.permissions",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
# A kept connection that the database dropped (a restart) is replaced at the next request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The statements read at every request (session, user, patient page) are prepared once per
# connection on PostgreSQL (registry.rows); 0 for a pooler in transaction mode (PgBouncer's
# pool_mode=transaction), where a connection's prepared statements do not follow it.
IMMUNOREG_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "registry.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out username from that address
    # Django's ModelBackend, the signed-in user read without compiling a queryset at every
    # request (a session signed in through Django's own is signed out once, at the upgrade).
    "registry.auth_backends.ModelBackend",
]
# Django's database sessions, read without compiling a queryset at every request.
SESSION_ENGINE = "registry.sessions"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # A common password with digits added (iloveyou1234), or one key held down (aaaaaaaaaaaa).
    {"NAME": "registry.passwords.CommonPasswordVariantValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
# The report archive: each file written whole under the name the app gave it (registry.files).
STORAGES = {
    "default": {"BACKEND": "registry.files.WholeFileStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads (cohort files are the only ones): their size and kind are checked as they arrive
# (registry.middleware.CheckedUploadHandler), before anything is stored.
# Seconds between saves of a signed-in session that keep its idle timeout counting from the
# last request (production: 60; 0: Django's default, the expiry is set when it is created).
IMMUNOREG_SESSION_REFRESH_SECONDS = 0
IMMUNOREG_MAX_UPLOAD_BYTES = env.int("IMMUNOREG_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
IMMUNOREG_UPLOAD_EXTENSIONS = (".csv", ".xlsx")
# The bounds of a cohort import, from the web or the command (registry.cohort_file.ImportLimits;
# the file's size is IMMUNOREG_MAX_UPLOAD_BYTES): a file beyond one is refused as soon as that is
# known. The time covers reading, checking and writing, under gunicorn's 120 s timeout.
IMMUNOREG_IMPORT_MAX_ROWS = env.int("IMMUNOREG_IMPORT_MAX_ROWS", default=20_000)
# Rows of the laboratory file that goes with a cohort file.
IMMUNOREG_IMPORT_MAX_LAB_ROWS = env.int("IMMUNOREG_IMPORT_MAX_LAB_ROWS", default=200_000)
IMMUNOREG_IMPORT_MAX_COLUMNS = env.int("IMMUNOREG_IMPORT_MAX_COLUMNS", default=100)
IMMUNOREG_IMPORT_MAX_CELL_CHARS = env.int("IMMUNOREG_IMPORT_MAX_CELL_CHARS", default=1_000)
IMMUNOREG_IMPORT_MAX_XLSX_BYTES = env.int(
    "IMMUNOREG_IMPORT_MAX_XLSX_BYTES", default=50 * 1024 * 1024
)  # an .xlsx unpacked
IMMUNOREG_IMPORT_MAX_XLSX_RATIO = env.int("IMMUNOREG_IMPORT_MAX_XLSX_RATIO", default=100)
IMMUNOREG_IMPORT_MAX_XLSX_STRINGS_BYTES = env.int(
    "IMMUNOREG_IMPORT_MAX_XLSX_STRINGS_BYTES", default=10 * 1024 * 1024
)  # an .xlsx's shared strings unpacked (read whole before the first row)
IMMUNOREG_IMPORT_MAX_SECONDS = env.float("IMMUNOREG_IMPORT_MAX_SECONDS", default=100.0)
IMMUNOREG_IMPORT_MAX_PROBLEMS_SHOWN = 200
FILE_UPLOAD_HANDLERS = [
    "registry.middleware.CheckedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # a form without files: 2.5 MB (Django's default)

# Content-Security-Policy (django-csp): scripts, styles, fonts and fetches from the app itself
# only, no inline script or style; plots are SVG images, some as data: URIs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Signing in: after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES (`manage.py axes_reset_username NAME` unlocks).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Behind DJANGO_PROXY_COUNT reverse proxies, the client's address is the one the outermost proxy
# appended to X-Forwarded-For, i.e. the proxy count-th from the right (each proxy appends the
# address it was reached from; anything further left was written by the client and is not
# trusted). django-axes reads it through django-ipware (python-ipware), whose proxy count
# counts the proxies *in* the header, the last one (whose address is REMOTE_ADDR) excluded:
# hence the minus one. Not strict: a longer, spoofed header still gives the client's address
# (strict would skip the header and fall back to no address at all).
PROXY_COUNT = env.int("DJANGO_PROXY_COUNT", default=0)
AXES_IPWARE_PROXY_COUNT = PROXY_COUNT - 1 if PROXY_COUNT else None
AXES_IPWARE_PROXY_ORDER = "left-most"
AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR",) if PROXY_COUNT else ("REMOTE_ADDR",)
IPWARE_STRICT = False

# Two-factor sign-in (TOTP) for data managers and administrators (registry.otp).
IMMUNOREG_REQUIRE_2FA = env.bool("IMMUNOREG_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = "ImmunoReg"

# The audit trail is append-only: nobody may revert through simple-history's admin view.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # first: a refused key is a 401 that names the Token scheme
        "registry.api.auth.ApiTokenAuthentication",  # hashed, expiring, maybe read-only keys
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies are limited in size and nesting (a 400 with a message, never a 500).
    "DEFAULT_PARSER_CLASSES": [
        "registry.api.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "registry.api.parsers.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
# API tokens (registry.models.ApiToken) expire after this many days unless made for fewer.
IMMUNOREG_API_TOKEN_DAYS = env.int("IMMUNOREG_API_TOKEN_DAYS", default=90)
SPECTACULAR_SETTINGS = {
    "TITLE": "ImmunoReg API",
    "VERSION": "1",
    # The schema and its docs are for signed-in users, like everything else (INTERFACES.md 4).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Choice sets shared by several fields get one name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "YesNoUnknownEnum": "registry.models.choices.YES_NO_UNKNOWN",
        "MrdStatusEnum": "registry.models.choices.MRD_STATUS",
    },
    # No validator badge: Swagger UI would send the schema's address to validator.swagger.io
    # and show its image from there (refused by the Content-Security-Policy).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The cache: the worklist keeps each site's computed lines in it for the day, and its rendered
# page until the site's data change (registry.selectors.worklist_for). Unset (the local demo,
# one process): each process's memory. In production, Redis (CACHE_URL=redis://host:6379/1, a
# database of its own beside the broker's), so that every gunicorn process and the worker that
# warms the worklists after midnight share one copy: with each process's own memory, each one
# computes a large site afresh (seconds at 200,000 patients). `check --deploy` warns without it.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# Celery: with no broker configured, tasks run in-process (the local demo and tests).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=not env("CELERY_BROKER_URL", default="")
)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# A task whose worker died before acknowledging it (late acks) is delivered again once it has
# been out this long (Redis), by a sweep of the unacknowledged tasks every minute or so. Longer
# than any task runs; the timeouts keep a dropped connection from hanging a publish.
visibility_timeout = env.int("CELERY_VISIBILITY_TIMEOUT", default=2 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": visibility_timeout,
    "unacked_restore_interval": max(1, min(60, visibility_timeout // 5)),
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": 3,
    "socket_timeout": 30,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The outbox (registry.outbox): a message handed to the broker and not done this many seconds
# later is sent again by the dispatcher (Redis without persistence loses what it had accepted
# when it restarts). Ten minutes: an outbox task takes under a second, but it may wait behind
# an analytics computation of several minutes; sending it again early costs nothing (the work
# is idempotent). After this many sends it is not sent again and /healthz reports it.
IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS = env.int(
    "IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS", default=600
)
IMMUNOREG_OUTBOX_MAX_SENDS = env.int("IMMUNOREG_OUTBOX_MAX_SENDS", default=5)
# An analytics computation holds its claim by a lease its worker renews every sixth of it (a
# thread beside the computation); a claim whose lease ran out was interrupted, whatever host or
# process held it, and the watchdog (every minute) closes it and computes its scope again. A
# claim no worker has taken up yet is held for the queued lease (nobody renews it).
ANALYTICS_LEASE_SECONDS = env.int("ANALYTICS_LEASE_SECONDS", default=180)
ANALYTICS_QUEUED_LEASE_SECONDS = env.int("ANALYTICS_QUEUED_LEASE_SECONDS", default=600)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the worker logs through LOGGING below
CELERY_TIMEZONE = TIME_ZONE

# Reports asked for on the reports page (kept in the archive): at most this many per user in
# 24 hours; the same one asked again while on its way is not rendered twice.
IMMUNOREG_REPORT_RENDERINGS_PER_DAY = env.int("IMMUNOREG_REPORT_RENDERINGS_PER_DAY", default=20)

# The registry's clinical data cut-off for the demo cohort; None means "today".
IMMUNOREG_TODAY = env("IMMUNOREG_TODAY", default=None)

# One line per event; LOG_FORMAT=json gives JSON lines (production's default) with request ids.
LOGGING = logging_config(
    json_lines=env("LOG_FORMAT", default="text") == "json", level=env("LOG_LEVEL", default="INFO")
)
