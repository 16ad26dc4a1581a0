"""Settings shared by every environment. Every value that differs between machines comes from the
environment through the one ``env`` below; ``.env`` in the project root is read when present."""

import datetime as dt
from pathlib import Path
from typing import Any

import environ
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
RUN_DIR = BASE_DIR / ".run"  # local state of the zero-setup mode: SQLite file, embedded broker, beat schedule

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    # The admin theme (docs/ui.md): before django.contrib.admin so its templates win.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.inlines",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "apps.core",
    "apps.users",
    "apps.kommo",
    "apps.stakeholders",
    "apps.gates",
    "apps.intake",
    "apps.reports",
    "apps.escalations",
    "apps.flows",
]

MIDDLEWARE = [
    "apps.core.timeouts.RequestPathTimeoutMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A page whose database does not answer is a 503 that says so, not a 500 (apps/core/unavailable.py).
    "apps.core.unavailable.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in of a locked-out person into the lock-out page.
    "axes.middleware.AxesMiddleware",
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
                "apps.core.ui.portal_theme",
            ],
        },
    },
]

# Database: PostgreSQL in production and CI; an SQLite file is the zero-setup default.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{RUN_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"].get("ENGINE") == "django.db.backends.sqlite3":
    # Web, worker and beat write to the same file: WAL lets readers run beside the writer, IMMEDIATE takes
    # the write lock at BEGIN (no upgrade deadlocks), and a writer waits for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A persistent connection is checked before a request reuses it: after a database restart the first request
# of each process reconnects instead of failing on the dead connection.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Request paths a client waits on with a deadline (Kommo's 2 seconds, intake's 503-and-retry): their
# statements are cancelled after this many milliseconds (apps/core/timeouts.py); 0 turns it off.
DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = env.int("DATABASE_REQUEST_STATEMENT_TIMEOUT_MS", default=1000)
# ...and every wait of theirs on PostgreSQL (connecting included) ends this many milliseconds after the
# request reached the application, whatever the server does (frozen, gone, not answering new connections):
# the connection is closed and the view answers 503. Longer than the statement timeout, which the server
# enforces first while it can. 0 turns it off.
DATABASE_REQUEST_BUDGET_MS = env.int("DATABASE_REQUEST_BUDGET_MS", default=1500)
# After a request of theirs met that deadline, the process answers them 503 at once for this many
# milliseconds without trying the database, then lets one request try it (apps/core/timeouts.py): a frozen
# database does not queue deliveries behind requests that each hold a worker for the budget. 0 turns it off.
DATABASE_REQUEST_FAST_FAIL_MS = env.int("DATABASE_REQUEST_FAST_FAIL_MS", default=3000)
# The paths bounded so: the webhook and intake requests, and the health check, which a frozen database would
# otherwise hold until gunicorn's worker timeout, one worker per probe of the load balancer.
DATABASE_BOUNDED_PATHS = ("/webhooks/kommo/", "/api/v1/intake/", "/healthz")
# Every other request (the pages, the admin, the reports, the export API): every wait of theirs on PostgreSQL
# ends this many milliseconds after the request reached the application (the time spent waiting for Kommo
# not counted), the connection is closed and the page answers 503, instead of a frozen server holding the
# worker until gunicorn kills it (GUNICORN_TIMEOUT, 30 s) and the person gets no answer at all. Longer than
# any page legitimately waits (the reports' slowest are a few seconds at 100,000 deals on a loaded machine),
# well below GUNICORN_TIMEOUT. No statement timeout and no fast-fail hold for them (apps/core/timeouts.py).
# 0 turns it off.
DATABASE_PAGE_BUDGET_MS = env.int("DATABASE_PAGE_BUDGET_MS", default=15000)


POSTGRESQL_BACKEND = "apps.core.postgresql"


def apply_postgresql_options(database: dict[str, Any]) -> None:
    """Sets the portal's backend and connection options on a PostgreSQL database's settings; others are left
    alone.

    The backend is Django's own with connections that keep to the request's database budget
    (``apps/core/postgresql``, ``DATABASE_REQUEST_BUDGET_MS``).

    ``DATABASE_CONNECT_TIMEOUT``: seconds to connect (libpq's ``connect_timeout``, at least 2).

    ``DATABASE_PREPARE_THRESHOLD``: a statement run this many times on a connection with server-side
    parameters is prepared (psycopg's prepare_threshold). Django's own queries bind client-side and never
    are; the webhook INSERT (apps/kommo/webhooks/intake.py) does. Empty turns it off, as behind a pooler in
    transaction mode that cannot keep prepared statements (PgBouncer before 1.21).
    """
    if database.get("ENGINE") not in {"django.db.backends.postgresql", POSTGRESQL_BACKEND}:
        return
    database["ENGINE"] = POSTGRESQL_BACKEND
    threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5")
    options = database.setdefault("OPTIONS", {})
    options["prepare_threshold"] = int(threshold) if threshold else None
    # Seconds to establish a connection, the handshake included: a database that does not answer fails the
    # connection instead of holding it. Whole seconds, and libpq and psycopg take 1 as 2: the webhook and
    # intake paths give up sooner, within DATABASE_REQUEST_BUDGET_MS.
    options["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=2)


apply_postgresql_options(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "users.User"
# django-axes first: it refuses a locked-out person before the password is checked (docs/access.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Managers sign in here (the admin login refuses people without staff rights).
LOGIN_URL = "login"
# Signing in without a `next` (the admin's sign-in page reached directly) goes to `/`, which sends each
# person where their work is; Django's default, /accounts/profile/, does not exist here.
LOGIN_REDIRECT_URL = "home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Sign-in lock-out (django-axes, docs/access.md): after AXES_FAILURE_LIMIT wrong passwords for one user name
# from one address, that pair is refused for AXES_COOLOFF_MINUTES, on /accounts/login/ and the admin login
# alike; the right password inside the lock is refused too. Sales ops see and lift locks in the admin.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# The client address: REMOTE_ADDR unless a proxy in front sets a header (e.g. HTTP_X_FORWARDED_FOR with
# AXES_PROXY_COUNT=1); a header a client can send itself must never be trusted here.
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list("AXES_CLIENT_IP_HEADERS", default=["REMOTE_ADDR"])
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None

# The admin theme, django-unfold (docs/ui.md). The sidebar is built per request from what the user may view.
UNFOLD = {
    "SITE_TITLE": "Kommo B2B Portal",
    "SITE_HEADER": "Kommo B2B Portal",
    "SITE_SUBHEADER": "apps.core.ui.admin_subheader",
    "SITE_URL": "/",
    "SITE_SYMBOL": "handshake",
    "SITE_FAVICONS": [{"rel": "icon", "type": "image/svg+xml", "href": "apps.core.ui.favicon_url"}],
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": "apps.core.ui.admin_sidebar",
    },
}

# Redis: the Celery broker, the shared rate limiter and the cache. Unset means the zero-setup mode:
# an embedded file-system broker that needs no server (good for one machine, not for production).
REDIS_URL = env("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(RUN_DIR / "cache"),
        }
    }

# Celery ------------------------------------------------------------------------------------------------
BROKER_DIR = RUN_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT = None  # the URL's (redis)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacknowledged task (its worker died) is delivered again after this many seconds.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # A broker that does not answer must not hold a web request past Kommo's 2 seconds.
        "socket_connect_timeout": 1,
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    # kombu's transport with messages renamed into place once written (apps/core/filesystem_broker.py).
    CELERY_BROKER_TRANSPORT = "apps.core.filesystem_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu's exchange tables; its default is ./control, which would land in the checkout.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# Tasks are idempotent: acknowledge after the work, and give the task back when its worker dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=150)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish that fails is tried once more at once (a pooled connection the broker closed), then given up:
# web requests log it and answer (apps/core/broker.py), the sweepers publish again when the broker is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
# Each queue has its own exchange and routing key: a task routed to one queue must never reach another.
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in ("default", "webhooks", "kommo")
)
CELERY_TASK_DEFAULT_EXCHANGE = "default"
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
# Routed by job: webhook intake must never wait behind a long sync; Kommo API work shares one queue.
CELERY_TASK_ROUTES = {
    "apps.kommo.tasks.webhook_*": {"queue": "webhooks"},
    "apps.kommo.tasks.*": {"queue": "kommo"},
    "apps.gates.tasks.*": {"queue": "kommo"},
    "apps.intake.tasks.*": {"queue": "kommo"},
    "apps.escalations.tasks.*": {"queue": "kommo"},
}
# How often beat checks the stage time limits (minutes).
ESCALATION_CHECK_MINUTES = env.float("ESCALATION_CHECK_MINUTES", default=15.0)
# How often the stuck-deals answer is written for the stuck page and the export's stuck columns (minutes).
REPORTS_EXPORT_STUCK_MINUTES = env.float("REPORTS_EXPORT_STUCK_MINUTES", default=10.0)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # The mirror: deals, contacts and companies changed since the last run (a small overlap included).
    "kommo-sync-incremental": {"task": "apps.kommo.tasks.sync_incremental", "schedule": 15 * 60.0},
    # Stage history with who moved each deal, and repairs for webhooks that never arrived.
    "kommo-sync-events": {"task": "apps.kommo.tasks.sync_events", "schedule": 5 * 60.0},
    # Webhook events nobody is working on (never published, worker died, retry task lost) go back in line.
    # Every 15 s: a claim expires 20 s after its worker's last heartbeat, so a killed worker's events are
    # taken up again within 35 s.
    "kommo-webhooks-sweep": {"task": "apps.kommo.tasks.webhook_sweep", "schedule": 15.0},
    # Processed and ignored webhook events older than KOMMO_WEBHOOK_KEEP_DAYS (30) are deleted.
    "kommo-webhooks-prune": {"task": "apps.kommo.tasks.webhook_prune", "schedule": 24 * 60 * 60.0},
    # Gate evaluations and outbound changes whose task was lost (pending, running or sending for too long)
    # are queued again.
    "gates-sweep": {"task": "apps.gates.tasks.sweep", "schedule": 60.0},
    # This week's decision-maker coverage snapshot, replaced by each run of the week (the coverage trend).
    "reports-coverage-snapshot": {"task": "apps.reports.tasks.coverage_snapshot", "schedule": 6 * 60 * 60.0},
    # This week's forecast snapshot per account and pipeline: written by the week's first run, never changed.
    "reports-forecast-snapshot": {"task": "apps.reports.tasks.forecast_snapshot", "schedule": 6 * 60 * 60.0},
    # The stuck-deals selector's answer for the BI export's stuck and stuck_reasons columns and bi views.
    "reports-export-stuck": {
        "task": "apps.reports.tasks.export_stuck_refresh",
        "schedule": REPORTS_EXPORT_STUCK_MINUTES * 60.0,
    },
    # Intake submissions whose task was lost (a broker outage at the commit) or whose worker died go back in
    # line.
    "intake-submissions-sweep": {"task": "apps.intake.tasks.intake_submissions_sweep_task", "schedule": 30.0},
    # Deals past their stage's time limit: one task for the manager, past the second limit one for the head
    # of sales, once per stay and level (docs/escalation.md).
    "escalations-check-limits": {
        "task": "apps.escalations.tasks.check_limits",
        "schedule": 60.0 * ESCALATION_CHECK_MINUTES,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(RUN_DIR / "celerybeat-schedule")

# Django REST framework --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kommo B2B Portal API",
    "DESCRIPTION": "Lead intake and BI export of the Kommo B2B Portal.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Kommo --------------------------------------------------------------------------------------------------
# Fernet key that encrypts OAuth and long-lived tokens at rest (python -c "from cryptography.fernet import
# Fernet; print(Fernet.generate_key().decode())").
KOMMO_TOKEN_ENCRYPTION_KEY = env("KOMMO_TOKEN_ENCRYPTION_KEY")
KOMMO_RATE_LIMIT_PER_SECOND = env.float("KOMMO_RATE_LIMIT_PER_SECOND", default=7.0)
# Access tokens are refreshed this many seconds before they expire.
KOMMO_TOKEN_REFRESH_MARGIN_SECONDS = env.int("KOMMO_TOKEN_REFRESH_MARGIN_SECONDS", default=600)
KOMMO_CONNECT_TIMEOUT = env.float("KOMMO_CONNECT_TIMEOUT", default=5.0)
KOMMO_READ_TIMEOUT = env.float("KOMMO_READ_TIMEOUT", default=30.0)
# A page that calls Kommo (a manager's stakeholder edit, the admin's Sync now, connecting an account) waits
# for it at most this many milliseconds from when its request reached the application, retries and
# rate-limit waits included, and then says Kommo did not answer: the page's database deadline
# (DATABASE_PAGE_BUDGET_MS) does not run while Kommo is waited on, so the two together (15 + 12 s) stay below
# GUNICORN_TIMEOUT (30 s), past which the person would get no answer at all. PostgreSQL only, as the page's
# database deadline; 0 turns it off (each call then has KOMMO_READ_TIMEOUT and five tries).
KOMMO_PAGE_BUDGET_MS = env.int("KOMMO_PAGE_BUDGET_MS", default=12000)
# The address Kommo posts webhooks to (this portal as seen from Kommo), e.g. https://portal.example.com
KOMMO_PUBLIC_URL = env("KOMMO_PUBLIC_URL", default="http://127.0.0.1:8000")
KOMMO_WEBHOOK_MAX_BODY_BYTES = env.int("KOMMO_WEBHOOK_MAX_BODY_BYTES", default=1_048_576)
# Processed and ignored webhook events are pruned after this many days (failed and dead ones are kept).
KOMMO_WEBHOOK_KEEP_DAYS = env.int("KOMMO_WEBHOOK_KEEP_DAYS", default=30)
# Webhook processing: attempts before an event is dead and the backoff between them; how many waiting
# events one task claims; when a received event or a due retry counts as lost (its task never ran); how
# often a worker renews its claims and when a claim no longer renewed counts as abandoned (its worker
# died: the sweeper, every 15 s, re-queues it); and how long a web process waits before asking for
# processing again, since one task processes every waiting event of an account.
KOMMO_WEBHOOK_MAX_ATTEMPTS = 6
KOMMO_WEBHOOK_RETRY_BASE_SECONDS = 30
KOMMO_WEBHOOK_RETRY_CAP_SECONDS = 3600
KOMMO_WEBHOOK_BATCH_SIZE = 100
KOMMO_WEBHOOK_STUCK_AFTER_SECONDS = 300
KOMMO_WEBHOOK_HEARTBEAT_SECONDS = 5
KOMMO_WEBHOOK_CLAIM_EXPIRES_SECONDS = 20
KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS = 50
# An account's window while its deliveries come in a flood (intake.FLOOD_RINGS, five, or more within one
# window: faster than 100 a second): a flood costs a process five publishes a second instead of twenty.
KOMMO_WEBHOOK_ENQUEUE_FLOOD_WINDOW_MS = 200
# An event still ``received`` this long after its commit lost its publish (the broker was down): the sweeper
# (every 15 s) sends its account a task. A request publishes within KOMMO_WEBHOOK_ENQUEUE_FLOOD_WINDOW_MS.
KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS = 10
# Region for phone numbers written without a country code (ISO 3166 code such as "US"); unset: only numbers
# in international form (+…, 00…) get a lookup key.
KOMMO_DEFAULT_PHONE_REGION = env("KOMMO_DEFAULT_PHONE_REGION", default="") or None
# Mirror tuning. Incremental sync re-reads this far behind its cursor (clock skew, same-second writes); the
# events reconciliation starts this far back on its first run; one stage move reported by several sources
# within the window is one StageChange, and a move a sync only inferred matches an exact report this old.
KOMMO_SYNC_OVERLAP_SECONDS = 120
KOMMO_EVENTS_LOOKBACK_HOURS = 24
# An account's first sync reads back this many days of deal moves from Kommo's events (0: none);
# `kommo_sync --history DAYS` reads any span again.
KOMMO_HISTORY_DAYS = env.int("KOMMO_HISTORY_DAYS", default=365)
KOMMO_STAGE_CHANGE_WINDOW_SECONDS = 300
KOMMO_STAGE_CHANGE_INFERRED_LAG_HOURS = 24

# Reports: an open legal review older than this many days is listed on the legal review page.
REPORTS_LEGAL_REVIEW_STALE_DAYS = env.int("REPORTS_LEGAL_REVIEW_STALE_DAYS", default=14)

# Reports: stuck deals -------------------------------------------------------------------------------------
# A deal is stuck when no stakeholder was touched for this many days; when a stakeholder's objection weighs at
# least this much; and, in a stage whose usual time cannot be measured yet (under 20 completed stays in 180
# days) and has no default in the admin, past 1.5 times this many days.
REPORTS_STALE_TOUCH_DAYS = env.int("REPORTS_STALE_TOUCH_DAYS", default=14)
REPORTS_OBJECTION_WEIGHT = env.float("REPORTS_OBJECTION_WEIGHT", default=0.5)
REPORTS_STAGE_DEFAULT_DAYS = env.float("REPORTS_STAGE_DEFAULT_DAYS", default=14.0)

# Reports: the forecast ------------------------------------------------------------------------------------
# A stage's p is won ÷ (won + lost) among the deals that entered it between these many months before the
# forecast's date (the closed cohort window); below REPORTS_FORECAST_MIN_CLOSED closed deals it is pulled
# towards a prior from the stage's place in the pipeline.
REPORTS_FORECAST_COHORT_MIN_MONTHS = env.int("REPORTS_FORECAST_COHORT_MIN_MONTHS", default=6)
REPORTS_FORECAST_COHORT_MAX_MONTHS = env.int("REPORTS_FORECAST_COHORT_MAX_MONTHS", default=18)
REPORTS_FORECAST_MIN_CLOSED = env.int("REPORTS_FORECAST_MIN_CLOSED", default=20)

# The webhook URL's token is a credential: every logger that quotes request paths masks it (the filter is
# also on gunicorn's access and error logs, config/gunicorn.py).
LOG_FILTERS = {"mask_webhook_token": {"()": "apps.kommo.webhooks.logmask.MaskWebhookToken"}}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": LOG_FILTERS,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["mask_webhook_token"]},
        # runserver's request lines; gunicorn writes its own access log.
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["mask_webhook_token"],
        },
    },
}
