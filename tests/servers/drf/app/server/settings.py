"""Settings of the Django REST framework test server (tests/servers/drf).

The database is the private PostgreSQL cluster that ../run starts; it passes its
port in OFFLINE_SYNC_PG_PORT. No auth, no sessions, no admin: every endpoint is open
(AllowAny, no authentication classes, so no CSRF check either) and speaks JSON only.
"""
import os

DEBUG = False
SECRET_KEY = "offline-sync-test-server-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "rest_framework",
    "records",
]

# Django's defaults minus sessions/auth/messages/CSRF/clickjacking, which an open JSON
# API does not use. CommonMiddleware stays: with APPEND_SLASH (default True) it answers a
# request for ".../tasks" with a 301 to ".../tasks/", as a stock Django app does.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "server.urls"
WSGI_APPLICATION = "server.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("OFFLINE_SYNC_PG_DB", "postgres"),
        "USER": os.environ.get("OFFLINE_SYNC_PG_USER", "postgres"),
        "PASSWORD": "",
        "HOST": os.environ.get("OFFLINE_SYNC_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("OFFLINE_SYNC_PG_PORT", "5432"),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
LANGUAGE_CODE = "en-us"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # No pagination: a list is a plain JSON array (DRF's default).
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
