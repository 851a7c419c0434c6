"""Settings for the contact center.

Two runtime modes, one code path (see DESIGN.md):

* embedded (nothing set): SQLite in WAL mode, the in-memory channel layer, Celery on an in-memory
  broker consumed by a real worker thread inside the daphne process;
* production (``DATABASE_URL`` + ``REDIS_URL``): PostgreSQL, channels_redis, Celery on Redis with
  separate daphne / celery worker / celery beat processes.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CC_VAR_DIR", str(BASE_DIR / "var")))

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
CC_PRODUCTION = bool(DATABASE_URL and REDIS_URL)
CC_MODE = "production" if CC_PRODUCTION else "embedded"

# Off unless DEBUG=1, in the embedded default too: Django's debug pages show tracebacks and settings
# to whoever triggers an error. Errors still reach the console (LOGGING below: stderr).
DEBUG = env_bool("DEBUG", default=False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
if CC_PRODUCTION and SECRET_KEY == _DEV_SECRET and not env_bool("CC_ALLOW_DEV_SECRET"):
    raise ImproperlyConfigured("SECRET_KEY must be set in production mode")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CC_PUBLIC_URL = env_str("CC_PUBLIC_URL").rstrip("/")
CSRF_TRUSTED_ORIGINS = [CC_PUBLIC_URL] if CC_PUBLIC_URL else []

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "contactcenter",
    "profiles",
    "conversations",
    "supervisor",
    "surveys",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost but one: it also marks the error pages the middleware below may answer with.
    "contactcenter.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "contactcenter.middleware.ContentSecurityPolicyMiddleware",
    "contactcenter.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "contactcenter.urls"
ASGI_APPLICATION = "contactcenter.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if DATABASE_URL:
    # No persistent connections by default: under ASGI every request runs in a thread of its own,
    # so kept-open connections pile up until PostgreSQL refuses new clients (bench/webhook found it).
    # Long-lived Celery worker threads do benefit: the Procfile sets CC_DB_CONN_MAX_AGE for them.
    DATABASES = {"default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("CC_DB_CONN_MAX_AGE", 0), conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        # The production mode's SQL (row locks, SKIP LOCKED, prepared statements) is PostgreSQL's;
        # a typo'd scheme or sqlite:// would otherwise fail later with an obscure driver error.
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a PostgreSQL URL (postgres://…), not {DATABASE_URL.split(':', 1)[0]}://. "
            "For SQLite leave DATABASE_URL unset (the embedded mode) and set CC_SQLITE_PATH if needed.")
    # Django's backend plus a breaker: while PostgreSQL cannot be reached, requests fail at once
    # (503 with Retry-After) instead of each waiting for a connection (contactcenter/postgresql).
    DATABASES["default"]["ENGINE"] = "contactcenter.postgresql"
    # A PostgreSQL host that drops packets would otherwise hold a request for the OS's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("CC_DB_CONNECT_TIMEOUT", 3)
    # CC_DB_POOL=<max connections>: take connections from psycopg's pool instead of opening one per
    # request (daphne; bench/webhook measured it). Needs CC_DB_CONN_MAX_AGE=0: the pool keeps them.
    # A request waits up to CC_DB_POOL_TIMEOUT (10 s) for a free connection of a busy pool, then
    # answers 503 with Retry-After; while PostgreSQL is down it gives up at once (postgresql/base.py).
    if env_int("CC_DB_POOL", 0):
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 2, "max_size": env_int("CC_DB_POOL", 0), "timeout": env_int("CC_DB_POOL_TIMEOUT", 10)}
    # Server-side binding: parameters travel apart from the SQL, so a connection that lives on
    # (workers, the pool) prepares a statement the second time it runs, and PostgreSQL stops planning it
    # again. Planning was 1.3 ms of a routing decision's 3 ms in the database (bench/routing).
    # CC_DB_SERVER_SIDE_BINDING=0 turns it off, e.g. behind PgBouncer < 1.21 in transaction mode,
    # which cannot keep prepared statements.
    if env_bool("CC_DB_SERVER_SIDE_BINDING", True):
        _db_options = DATABASES["default"].setdefault("OPTIONS", {})
        _db_options["server_side_binding"] = True
        _kept = env_int("CC_DB_CONN_MAX_AGE", 0) > 0 or env_int("CC_DB_POOL", 0) > 0
        # A connection closed after one request would prepare for nothing (-1: never prepare).
        _prepare_threshold = env_int("CC_DB_PREPARE_THRESHOLD", 1 if _kept else -1)
        _db_options["prepare_threshold"] = _prepare_threshold if _prepare_threshold >= 0 else None
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("CC_SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets the web thread read while the embedded worker writes; IMMEDIATE makes a
                # writing transaction take the lock up front instead of failing with "database is
                # locked" when it upgrades from a read.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not the shared in-memory database: tests run the worker in a thread and
            # need real concurrent connections. One file per test process so runs never collide.
            "TEST": {"NAME": env_str("CC_SQLITE_TEST_PATH", str(VAR_DIR / f"test-{os.getpid()}.sqlite3"))},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels -------------------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Bounded, waiting pool (contactcenter.redis_pools): a mass disconnect queues for a
            # connection instead of failing its group cleanup with MaxConnectionsError.
            "BACKEND": "contactcenter.redis_pools.BoundedRedisChannelLayer",
            # redis-py 8 defaults to a 5 s socket timeout, the same length as channels_redis's
            # blocking receive: an idle console socket then died with 1011 every ~5 s
            # (django/channels_redis#422). A longer timeout keeps the blocking read inside it.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": env_int("CC_CHANNELS_SOCKET_TIMEOUT", 30)}],
                "prefix": env_str("CC_CHANNELS_PREFIX", "cc"),
                "max_connections": env_int("CC_CHANNELS_MAX_CONNECTIONS", 100),
                # Every socket of a daphne receives through ONE Redis key (channels_redis's
                # process-local channels), and "capacity" bounds that key: at 100 (the default)
                # a busy process dropped a fifth of its widget acks ("channel over capacity").
                "capacity": env_int("CC_CHANNELS_PROCESS_CAPACITY", 5000),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Cache ----------------------------------------------------------------------------------
if REDIS_URL:
    # One bounded pool per process shared by every consumer (contactcenter.redis_pools), not a
    # Redis client per socket.
    CACHES = {"default": {"BACKEND": "contactcenter.redis_pools.SharedPoolRedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"max_connections": env_int("CC_CACHE_MAX_CONNECTIONS", 50)}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------
# Embedded mode uses kombu's in-memory transport: the producer (a web request) and the consumer
# (the worker thread started by contactcenter.embedded) share the process, so tasks travel the
# same serialise -> broker -> worker path as in production.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# The (disabled) result backend is otherwise built per thread, and daphne runs every request's
# sync code in a fresh thread: that alone made each apply_async from a view ~1.5 ms dearer.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
# Celery's Django fixup closes every database connection before and after every task unless this
# is set, so CC_DB_CONN_MAX_AGE did nothing in workers: each task opened a new PostgreSQL
# connection (~3 ms and a server process fork; bench/routing found it). Set out of reach here;
# contactcenter.celery applies Django's own rule instead (CONN_MAX_AGE, health checks, errors).
CELERY_DB_REUSE_MAX = 2**31
CELERY_TASK_DEFAULT_QUEUE = env_str("CC_CELERY_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CC_TICK_SECONDS = env_int("CC_TICK_SECONDS", 5)
# An available agent none of whose consoles has been seen for this long is put offline (their
# offers go to others). Keep it well above the console's 25 s ping: browsers may run a hidden
# tab's timers only once a minute. 0 turns it off.
CC_CONSOLE_OFFLINE_GRACE_SECONDS = env_int("CC_CONSOLE_OFFLINE_GRACE_SECONDS", 120)
# After a failed attempt to reach PostgreSQL, requests fail at once (503, Retry-After) for this
# long before one of them tries again (contactcenter/postgresql). 0 turns the breaker off.
CC_DB_OUTAGE_SECONDS = env_int("CC_DB_OUTAGE_SECONDS", 1)
# Every this many seconds each console and widget socket checks, by a round trip through one of
# its groups, that the channel layer still delivers to it (a restarted Redis forgets every group
# membership): if not back within two checks, it closes with 4503 and the client reconnects and
# catches up. 0: off.
CC_CHANNEL_LAYER_CHECK_SECONDS = env_int("CC_CHANNEL_LAYER_CHECK_SECONDS", 10)
# A live event can be lost with no socket dropping (published while Redis restarts, or by a worker
# killed between its commit and the publish): every this many seconds, and after each reconnect,
# the console compares its work list and open timeline with /console/sync/ and catches up. 0: off.
CC_CONSOLE_SYNC_SECONDS = env_int("CC_CONSOLE_SYNC_SECONDS", 20)
# Open sockets per console session and per widget visitor token; past it the oldest closes with
# 4429 (conversations.socket_caps): one tab loop or script cannot take a daphne.
CC_SOCKETS_PER_OWNER = env_int("CC_SOCKETS_PER_OWNER", 20)
CELERY_BEAT_SCHEDULE = {
    "tick": {"task": "contactcenter.tick", "schedule": float(CC_TICK_SECONDS)},
}
# Start the in-process worker and beat threads with the ASGI app (embedded mode only). Under
# pytest the suite starts workers itself (tests/conftest.py: celery_worker), so importing the
# ASGI app in a websocket test must not start one as a side effect.
CC_EMBEDDED_WORKER = env_bool("CC_EMBEDDED_WORKER", default=not CC_PRODUCTION and "pytest" not in sys.modules)

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Sign-in throttling (contactcenter/login_throttle.py): five failures stop one address for
# one username for the window; the username itself is only slowed down (doubling delays from the
# third failure, at most CC_LOGIN_MAX_DELAY seconds), never locked for everyone.
CC_LOGIN_MAX_FAILURES = env_int("CC_LOGIN_MAX_FAILURES", 5)
CC_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("CC_LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
CC_LOGIN_FAILURE_WINDOW = env_int("CC_LOGIN_FAILURE_WINDOW", 15 * 60)
CC_LOGIN_SLOWDOWN_AFTER = env_int("CC_LOGIN_SLOWDOWN_AFTER", 3)
CC_LOGIN_MAX_DELAY = env_int("CC_LOGIN_MAX_DELAY", 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Behind reverse proxies: the client's address is taken from X-Forwarded-For, the entry written by
# the outermost of CC_TRUSTED_PROXY_COUNT proxies of ours (contactcenter.client_address).
CC_PROXY_HEADERS = env_bool("CC_PROXY_HEADERS")
CC_TRUSTED_PROXY_COUNT = env_int("CC_TRUSTED_PROXY_COUNT", 1)
if CC_PRODUCTION and CC_PUBLIC_URL.startswith("https://"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["contactcenter.permissions.IsContactCenterStaff"],
    # Bounded nesting and finite numbers (contactcenter.decoding): malformed JSON is a 400, never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "contactcenter.api_parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": "10/minute"},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Contact Center API",
    "DESCRIPTION": "Customers, identities, the cross-channel timeline, merges.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- i18n / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"
CC_DEFAULT_TIME_ZONE = env_str("CC_DEFAULT_TIME_ZONE", "Asia/Tokyo")
# Wallboard and reports: an abandon within this many seconds of entering the queue is a "short
# abandon" (a misdial, a customer who changed their mind), left out of the service level.
CC_SHORT_ABANDON_SECONDS = env_int("CC_SHORT_ABANDON_SECONDS", 5)
CC_DEFAULT_REGION = env_str("CC_DEFAULT_REGION", "JP").upper()

# Reports (docs/metrics.md): first-contact resolution looks this many days after a resolution for
# the same customer's next contact on any channel.
CC_FCR_DAYS = env_int("CC_FCR_DAYS", 7)

# Who sees a customer (profiles.selectors.visible_customers): "all" staff (the default: whoever
# serves a customer sees everything they said), or "served": agents see only the customers who
# contacted the queues they serve or whom they served; supervisors and admins see all.
CC_CUSTOMER_ACCESS = env_str("CC_CUSTOMER_ACCESS", "all").strip().lower()
if CC_CUSTOMER_ACCESS not in ("all", "served"):
    raise ImproperlyConfigured(f"CC_CUSTOMER_ACCESS must be 'all' or 'served', not {CC_CUSTOMER_ACCESS!r}")
# The customer access log keeps one row per viewer, customer and door (console or API) within this
# many seconds: scrolling a timeline or reopening a customer is one view, not fifty rows.
CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS = env_int("CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS", 300)

# --- Static / media -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_ROOT = Path(env_str("CC_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
CC_SERVE_STATIC = env_bool("CC_SERVE_STATIC", default=True)
# HTTP requests one daphne process works on at once (each holds a database connection); keep
# processes x this below PostgreSQL's max_connections. More wait in the event loop.
CC_MAX_CONCURRENT_REQUESTS = env_int("CC_MAX_CONCURRENT_REQUESTS", 24)
# When daphne stops (SIGTERM), requests in flight get this long to finish and answer; past it they
# are aborted as if their client had left, and the process exits once their threads are done
# (contactcenter/graceful_stop.py). Keep it well inside the process manager's grace (systemd: 90 s).
CC_HTTP_DRAIN_SECONDS = env_int("CC_HTTP_DRAIN_SECONDS", 10)

# --- Twilio ---------------------------------------------------------------------------------
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
# The console's softphone (Twilio Voice JavaScript SDK): an API key and the TwiML app its calls use.
# Without all three (and the account SID) the softphone connects to the simulated call.
TWILIO_API_KEY = env_str("TWILIO_API_KEY")
TWILIO_API_SECRET = env_str("TWILIO_API_SECRET")
TWILIO_TWIML_APP_SID = env_str("TWILIO_TWIML_APP_SID")
# Softphone access tokens live this long; the page asks for a new one before it expires.
CC_SOFTPHONE_TOKEN_TTL_SECONDS = env_int("CC_SOFTPHONE_TOKEN_TTL_SECONDS", 3600)
# Click-to-call only within these hours of the customer's local time (their time zone, else
# CC_DEFAULT_TIME_ZONE), "HH:MM-HH:MM".
CC_CALLING_HOURS = env_str("CC_CALLING_HOURS", "09:00-20:00")
# Media is fetched only from these hosts (https, public addresses only): Twilio's API and CDNs.
CC_TWILIO_MEDIA_HOSTS = env_list("CC_TWILIO_MEDIA_HOSTS", ["api.twilio.com", "*.twiliocdn.com", "*.twilio.com"])
CC_MAX_ATTACHMENT_BYTES = env_int("CC_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024)
# Processed raw Twilio webhooks are kept this long (for the admin, and as the MessageSid dedupe of
# late retries; the message itself stays unique per provider id after that). Failed ones are kept.
CC_INBOUND_EVENT_RETENTION_DAYS = env_int("CC_INBOUND_EVENT_RETENTION_DAYS", 30)

# --- Customer simulator (dev) ---------------------------------------------------------------
# On in the embedded default, off in production unless CC_SIMULATOR=1.
CC_SIMULATOR = env_bool("CC_SIMULATOR", default=not CC_PRODUCTION)
# Without Twilio credentials, play Twilio's part after each recorded send: signed status
# callbacks (sent, then delivered) to our own webhook, so delivery states move as in production.
CC_SIMULATE_DELIVERY = env_bool("CC_SIMULATE_DELIVERY", default=CC_SIMULATOR and "pytest" not in sys.modules)
# The URL this server answers on, for requests it makes to itself (set by runembedded).
CC_SELF_URL = env_str("CC_SELF_URL", CC_PUBLIC_URL or "http://127.0.0.1:8000")

# --- Demo -----------------------------------------------------------------------------------
CC_DEMO_PASSWORD = env_str("CC_DEMO_PASSWORD", "demo-password-2026")
# The demo email inbox's secret for POST /webhooks/email/ (header X-CC-Email-Secret), set by seed_demo.
CC_DEMO_EMAIL_SECRET = env_str("CC_DEMO_EMAIL_SECRET", "demo-email-secret-2026")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # stderr: what `make run`, the Procfile's processes and systemd show. Django's request errors
    # (with their traceback) propagate here whatever DEBUG is.
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["console"], "level": env_str("CC_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # The tick runs every few seconds: one line per run would drown everything else.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
    },
}

# --- Email ----------------------------------------------------------------------------------
# Outbound mail goes through Django's email backends. Without a real server configured it is
# recorded (RecordedProviderRequest) so the simulator shows what the customer's inbox received.
EMAIL_URL = env_str("EMAIL_URL")
CC_EMAIL_HOST = env_str("CC_EMAIL_HOST")
if EMAIL_URL or CC_EMAIL_HOST:
    from urllib.parse import unquote, urlsplit

    _email_url = urlsplit(EMAIL_URL) if EMAIL_URL else None
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = (_email_url.hostname if _email_url else CC_EMAIL_HOST) or "localhost"
    EMAIL_PORT = (_email_url.port if _email_url else None) or env_int("CC_EMAIL_PORT", 587)
    EMAIL_HOST_USER = unquote(_email_url.username or "") if _email_url else env_str("CC_EMAIL_USER")
    EMAIL_HOST_PASSWORD = unquote(_email_url.password or "") if _email_url else env_str("CC_EMAIL_PASSWORD")
    EMAIL_USE_SSL = (_email_url.scheme == "smtps") if _email_url else env_bool("CC_EMAIL_USE_SSL", False)
    EMAIL_USE_TLS = not EMAIL_USE_SSL and (
        (_email_url.scheme == "smtp+tls") if _email_url else env_bool("CC_EMAIL_USE_TLS", True)
    )
    EMAIL_TIMEOUT = env_int("CC_EMAIL_TIMEOUT", 30)
else:
    EMAIL_BACKEND = "conversations.channels.email.backend.RecordingEmailBackend"
CC_SMTP_HOST = env_str("CC_SMTP_HOST", "127.0.0.1")
CC_SMTP_PORT = env_int("CC_SMTP_PORT", 2525)
CC_SMTP_WORKERS = env_int("CC_SMTP_WORKERS", 4)  # mails ingested at once by the SMTP listener
CC_SMTP_STOP_GRACE = env_int("CC_SMTP_STOP_GRACE", 3)  # seconds given to mail in progress on SIGTERM
CC_EMAIL_WEBHOOK_SECRET = env_str("CC_EMAIL_WEBHOOK_SECRET")
CC_MAX_EMAIL_BYTES = env_int("CC_MAX_EMAIL_BYTES", 25 * 1024 * 1024)
# The work spent on one mail's HTML is bounded (sanitizing is quadratic in nesting depth): past any
# of these the formatted version is not rendered, the text part (or a plain extraction) is shown,
# the message is flagged and the raw mail kept. Checked by a linear scan before the sanitizer runs.
CC_EMAIL_HTML_MAX_BYTES = env_int("CC_EMAIL_HTML_MAX_BYTES", 2 * 1024 * 1024)
CC_EMAIL_HTML_MAX_DEPTH = env_int("CC_EMAIL_HTML_MAX_DEPTH", 400)
CC_EMAIL_HTML_MAX_TAGS = env_int("CC_EMAIL_HTML_MAX_TAGS", 100_000)
CC_EMAIL_HTML_BUDGET_SECONDS = env_int("CC_EMAIL_HTML_BUDGET_SECONDS", 5)
# Authentication-Results headers are trusted only from these authserv-ids (our own MTA).
CC_EMAIL_AUTHSERV_IDS = env_list("CC_EMAIL_AUTHSERV_IDS", [])
CC_IMAP_DEFAULT_INTERVAL = env_int("CC_IMAP_DEFAULT_INTERVAL", 60)
