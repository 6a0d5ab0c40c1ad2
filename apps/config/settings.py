"""Trueup settings, read from the environment (twelve-factor).

Every value has a safe default for the embedded start (SQLite under ``var/``,
tasks run in-process); production mode (``TRUEUP_ENV=production``) refuses to
start with a default secret or with DEBUG on.
"""

from __future__ import annotations

from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from apps.config.broker import filesystem_broker_options

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# The embedded start's files: SQLite, the sandboxes' state, the file broker, logs.
VAR_DIR = Path(env.str("TRUEUP_VAR_DIR", default=str(BASE_DIR / "var")))

TRUEUP_ENV = env.str("TRUEUP_ENV", default="development")
if TRUEUP_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"TRUEUP_ENV must be development, test or production, not {TRUEUP_ENV!r}")
PRODUCTION = TRUEUP_ENV == "production"

DEFAULT_SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION and TRUEUP_ENV != "test")

if PRODUCTION:
    if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "Production mode needs SECRET_KEY set to a random value of 32+ characters."
        )
    if DEBUG:
        raise ImproperlyConfigured("Production mode refuses to start with DEBUG on.")

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "django_celery_beat",
    "csp",
    "apps.common",
    "apps.users",
    "apps.tenancy",
    "apps.audit",
    "apps.accounts",
    "apps.catalog",
    "apps.usage",
    "apps.billing",
    "apps.providers",
    "apps.approvals",
    "apps.reconciliation",
    "apps.reports",
    "apps.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.common.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "apps.tenancy.middleware.TenantMiddleware",
]

ROOT_URLCONF = "apps.config.urls"
WSGI_APPLICATION = "apps.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "apps.tenancy.context_processors.tenancy",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'trueup.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The role the web app and workers connect as on PostgreSQL: not a superuser, not the
# owner of the tables, so row-level security always applies. Migrations grant it DML.
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="trueup_app")

# --- cache ------------------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://trueup")}

# --- auth -------------------------------------------------------------------
AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Failed logins: locked per username + address after AXES_FAILURE_LIMIT tries for AXES_COOLOFF_TIME.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "username"  # the login form posts the email as "username"
AXES_VERBOSE = False

# --- i18n / time ------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- static -----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Outside production WhiteNoise serves straight from static/ (no collectstatic needed).
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- email ------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Trueup <trueup@localhost>")

# --- security headers -------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # HTMX reads the token from the page, not the cookie
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- API --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.tenancy.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenancy.permissions.HasTenantAction"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "apps.common.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trueup API",
    "DESCRIPTION": "Usage ingestion, reconciliation runs, discrepancies and approvals. "
    "Authenticate with a tenant API key: `Authorization: Bearer <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

# --- Celery -----------------------------------------------------------------
# No broker configured: tasks run in-process (eagerly), so the embedded start needs no server.
_BROKER = env.str("CELERY_BROKER_URL", default="")
CELERY_BROKER_URL = _BROKER or "memory://"
CELERY_TASK_ALWAYS_EAGER = not _BROKER
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Installed into the database schedule when beat starts; editable in the admin from then on.
CELERY_BEAT_SCHEDULE = {
    "usage-push-sweep": {"task": "apps.billing.tasks.push_usage_sweep", "schedule": 60.0},
    "outbox-sweep": {"task": "apps.approvals.tasks.sweep_outbox", "schedule": 60.0},
    # Each tenant's own schedule (ReconciliationSchedule, in its time zone) decides what is due.
    "reconciliation-schedules": {
        "task": "apps.reconciliation.tasks.run_due_schedules",
        "schedule": crontab(minute=0),
    },
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# filesystem:// is the embedded broker `serve_demo` runs a real worker on: message files under var/celery/.
if CELERY_BROKER_URL.startswith("filesystem:"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(VAR_DIR / "celery")

# --- secrets at rest -------------------------------------------------------
# Fernet keys for provider credentials, newest first (rotation: add a key in front).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
if PRODUCTION and not ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "Production mode needs ENCRYPTION_KEYS (Fernet keys) for provider credentials."
    )

# --- provider sync ---------------------------------------------------------
SYNC_CONCURRENCY_PER_TENANT = env.int("SYNC_CONCURRENCY_PER_TENANT", default=1)
SYNC_LOCK_SECONDS = env.int("SYNC_LOCK_SECONDS", default=3600)

# --- provider sandboxes ----------------------------------------------------
# Where `serve_demo` runs the local Stripe- and Chargebee-compatible servers; empty when none runs.
STRIPE_SANDBOX_URL = env.str("TRUEUP_STRIPE_SANDBOX_URL", default="")
CHARGEBEE_SANDBOX_URL = env.str("TRUEUP_CHARGEBEE_SANDBOX_URL", default="")

# --- reconciliation -------------------------------------------------------
# A run over more accounts than this is split into chunks that workers reconcile in parallel.
RECONCILIATION_CHUNK_ACCOUNTS = env.int("RECONCILIATION_CHUNK_ACCOUNTS", default=2000)

# --- logging ----------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.common.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "axes": {"level": "WARNING"},
        # In-process tasks still build a (memory) connection, which kombu warns has no host.
        "kombu.connection": {"level": "ERROR" if CELERY_TASK_ALWAYS_EAGER else "WARNING"},
        "django.db.backends": {"level": "INFO"},
        "trueup.security": {"level": "INFO"},
    },
}
