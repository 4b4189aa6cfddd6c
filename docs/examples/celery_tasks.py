"""Publishing to WebSocket clients from Celery tasks, through ``wavelane.Publisher``.

Run a worker:  CELERY_BROKER_URL=redis://127.0.0.1:6379/1 WAVELANE_REDIS_URL=redis://127.0.0.1:6379 \
                   celery -A celery_tasks worker
Call a task:   celery_tasks.notify.delay("news:sport", {"score": [2, 1]})

The worker needs no WebSocket server: the Publisher hands each publication to Redis, and every
``wavelane.Server`` configured with the same ``redis_url`` delivers it to its subscribers (with the
same offsets and history as ``Server.publish``). The broker may be the same Redis (another db) or
anything Celery supports.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

from celery import Celery
from celery.signals import worker_process_shutdown

import wavelane

app = Celery("wavelane_example", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"))
app.conf.task_ignore_result = True

_publisher: Optional[wavelane.Publisher] = None
_lock = threading.Lock()


def publisher() -> wavelane.Publisher:
    """One Publisher per worker process, created by the first task — i.e. after the prefork pool
    forked the process (native threads do not survive fork; never create it at import time)."""
    global _publisher
    with _lock:
        if _publisher is None:
            _publisher = wavelane.Publisher(redis_url=os.environ.get("WAVELANE_REDIS_URL", "redis://127.0.0.1:6379"))
        return _publisher


@worker_process_shutdown.connect
def _close_publisher(**_: Any) -> None:
    if _publisher is not None:
        _publisher.close()


@app.task(autoretry_for=(wavelane.StartError,), retry_backoff=True, max_retries=5)
def notify(topic: str, data: Any) -> None:
    """Publish ``data`` to ``topic`` on every Wavelane server (retried while Redis is unreachable)."""
    publisher().publish(topic, data)


@app.task
def notify_user(user: str, data: Any) -> None:
    """One message to every connection of ``user`` (the JWT ``sub``), wherever it is connected."""
    publisher().send_user(user, data)
