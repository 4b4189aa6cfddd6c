"""A minimal Django project using Wavelane, settings and URLs in one file.

Two kinds of processes share one Redis:

* ``python manage.py runwavelane`` — the WebSocket server (``wavelane.Server`` with ``redis_url``);
  run one per machine or several with ``reuse_port`` (see docs/deployment.md).
* ``python manage.py runserver`` (or gunicorn/uwsgi) — the ordinary Django views. They mint tokens
  and publish through ``wavelane.Publisher``, which reaches the clients of every Wavelane server.

Environment: ``DJANGO_SECRET_KEY``, ``WAVELANE_JWT_SECRET`` (≥ 32 bytes, shared by both),
``WAVELANE_REDIS_URL``, ``WAVELANE_HOST``/``WAVELANE_PORT`` (the WebSocket listener).
"""

import os

from django.urls import path

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "settings"
INSTALLED_APPS = ["realtime"]   # no database, no auth app: the example needs neither
DATABASES: dict = {}
USE_TZ = True

WAVELANE = {
    "host": os.environ.get("WAVELANE_HOST", "127.0.0.1"),
    "port": int(os.environ.get("WAVELANE_PORT", "8765")),
    "jwt_secret": os.environ.get("WAVELANE_JWT_SECRET", ""),
    "redis_url": os.environ.get("WAVELANE_REDIS_URL", "redis://127.0.0.1:6379"),
    "client_topics": ["news:*"],
    "history_size": 100,
}

from realtime import views  # noqa: E402  (after the settings it reads)

urlpatterns = [
    path("token/<str:user>", views.token),
    path("publish/<str:topic>", views.publish),
]
