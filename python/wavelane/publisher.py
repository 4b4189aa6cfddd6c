"""``wavelane.Publisher``: publish into a multi-instance deployment from a process that serves no
clients (a Django view, a Celery task, a cron job).

It is the engine itself, started with ``listen=False``: the same Redis side (Lua scripts, topic
offsets, history, user channels) as :meth:`Server.publish`, without a listener. One
implementation of the Redis protocol, not a second copy.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ._server import Server
from ._types import Payload, Priority
from .errors import StartError

__all__ = ["Publisher"]


class Publisher:
    """Publishes through Redis to the clients of every Wavelane server sharing ``redis_url`` and
    ``redis_prefix``.

    ``Publisher(redis_url=...)`` starts a native engine with no listener (one event-loop thread)
    and waits up to ``connect_timeout`` seconds for Redis (:class:`StartError` if it does not
    answer). Publications get the same offsets, history and guarantees as :meth:`Server.publish`.
    Thread-safe; create one per process (after any ``fork``) and reuse it. Use it as a context
    manager or call :meth:`close`; it is also closed at interpreter exit.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        redis_prefix: Optional[str] = None,
        connect_timeout: float = 5.0,
        **config: Any,
    ) -> None:
        if not isinstance(redis_url, str) or not redis_url:
            raise TypeError("redis_url must be a non-empty str")
        cfg: Dict[str, Any] = {"port": 0, "threads": 1, **config, "redis_url": redis_url, "listen": False}
        if redis_prefix is not None:
            cfg["redis_prefix"] = redis_prefix
        self._server = Server(client_js=False, **cfg)
        self._server.start()
        if not self._server.wait_for_redis(connect_timeout):
            self._server.stop(0.5)
            raise StartError(f"redis_url: Redis at {redis_url} did not answer within {connect_timeout} s")

    def _housekeeping(self) -> None:
        # A publisher has no clients; its only events are Redis link reports ("cluster"), which
        # are logged by the engine. Discard them so the inbound queue stays empty.
        if self._server.pending():
            self._server.drain(1024, 0)

    def publish(self, topic: str, data: Any, *, priority: Priority = "normal", key: Optional[str] = None) -> int:
        """Publish ``data`` to ``topic``'s subscribers on every instance (as :meth:`Server.publish`
        with ``redis_url``: Redis assigns the offset; returns 0)."""
        self._housekeeping()
        return self._server.publish(topic, data, priority=priority, key=key)

    def send_user(self, user: str, data: Payload, *, priority: Priority = "normal", key: Optional[str] = None) -> None:
        """One frame to every connection of ``user`` on every instance."""
        self._housekeeping()
        self._server.send_user(user, data, priority=priority, key=key)

    def disconnect_user(self, user: str, code: int = 4003, reason: str = "disconnected") -> None:
        """Close every connection of ``user`` on every instance (revocation, logout)."""
        self._housekeeping()
        self._server.disconnect_user(user, code, reason)

    @property
    def connected(self) -> bool:
        """Whether publications currently go through Redis."""
        return bool(self._server.stats().get("redis_connected") == 1)

    def close(self) -> None:
        """Stop the engine (publications already handed to Redis are not affected). Idempotent."""
        self._server.stop(1.0)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
