"""Views: mint a token for the WebSocket server, publish to every Wavelane server through Redis."""

from __future__ import annotations

import json
import threading
import time
from typing import Optional

import jwt
from django.conf import settings
from django.http import HttpRequest, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import wavelane

TOKEN_TTL = 3600

_publisher: Optional[wavelane.Publisher] = None
_lock = threading.Lock()


def publisher() -> wavelane.Publisher:
    """One Publisher per process, created on first use — i.e. after gunicorn/uwsgi forked the
    worker (native threads do not survive fork), and shared by the worker's threads."""
    global _publisher
    with _lock:
        if _publisher is None:
            conf = settings.WAVELANE
            _publisher = wavelane.Publisher(redis_url=conf["redis_url"])
        return _publisher


def token(request: HttpRequest, user: str) -> JsonResponse:
    """An HS256 token the Wavelane server accepts. A real project mints it for ``request.user``
    (behind ``login_required``), never for a name the caller chooses."""
    now = int(time.time())
    conf = settings.WAVELANE
    tok = jwt.encode({"sub": user, "iat": now, "exp": now + TOKEN_TTL}, conf["jwt_secret"], algorithm="HS256")
    return JsonResponse({"token": tok, "url": f"ws://{conf['host']}:{conf['port']}/"})


@csrf_exempt          # an API endpoint for the example; protect it as your other write endpoints
@require_POST
def publish(request: HttpRequest, topic: str) -> JsonResponse:
    try:
        data = json.loads(request.body)
    except ValueError:
        return HttpResponseBadRequest("body must be JSON")
    try:
        publisher().publish(topic, data)
    except ValueError as exc:   # e.g. a topic longer than max_topic_length
        return HttpResponseBadRequest(str(exc))
    return JsonResponse({"published": topic})
