"""The public types of the Python API: event kinds and data, priorities, payloads.

Typing only (no behaviour): ``mypy --strict`` checks applications against these. The priority
*names* map to the engine's numbers here; which names exist is the engine's rule (an unknown one
is refused by the engine with its message).
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Tuple, TypedDict, Union

from . import _native

__all__ = [
    "Event", "EventKind", "Priority", "PRIORITIES", "Payload",
    "ConnectData", "SubscribeRequestData", "DroppedData", "ClusterData", "RefreshData", "RpcData",
]

#: The kinds of event :meth:`Server.drain` returns (a typo such as ``"conect"`` fails
#: ``mypy --strict``: comparing it with an ``EventKind`` is a non-overlapping equality check).
EventKind = Literal["connect", "message", "disconnect", "subscribe_request", "dropped", "cluster", "refresh", "rpc"]

#: Outbound priorities (see :data:`PRIORITIES`).
Priority = Literal["critical", "high", "normal", "low", "background"]

#: One drained event: ``(kind, conn, data)``; see :meth:`Server.drain`. ``data`` is ``Any``: its
#: type depends on ``kind`` (the ``*Data`` TypedDicts below; ``str | bytes`` for ``"message"``
#: (or a JSON value with ``parse_json``), the close code ``int`` for ``"disconnect"``), so
#: annotate it where you branch: ``info: ConnectData = data``.
Event = Tuple[EventKind, int, Any]


class ConnectData(TypedDict):
    """``data`` of a ``"connect"`` event."""

    user: Optional[str]
    addr: str
    claims: Dict[str, Any]
    path: str
    subprotocol: Optional[str]
    query: str
    headers: Dict[str, str]


class SubscribeRequestData(TypedDict):
    """``data`` of a ``"subscribe_request"`` event (answer with allow() or deny())."""

    topics: List[str]
    id: Any


class DroppedData(TypedDict):
    """``data`` of a ``"dropped"`` event."""

    count: int
    bytes: int
    priority: Dict[str, int]


class ClusterData(TypedDict):
    """``data`` of a ``"cluster"`` event (conn 0)."""

    redis: Literal["connected", "disconnected"]
    reason: Optional[str]
    undelivered: int


class RefreshData(TypedDict):
    """``data`` of a ``"refresh"`` event."""

    claims: Dict[str, Any]


class RpcData(TypedDict):
    """``data`` of an ``"rpc"`` event (answer with reply())."""

    method: str
    params: Any
    id: Any

Payload = Union[str, bytes, bytearray, memoryview]

_PAYLOAD_TEXT = _native.PAYLOAD_TEXT
_PAYLOAD_JSON = _native.PAYLOAD_JSON
_PAYLOAD_BINARY = _native.PAYLOAD_BINARY

#: Outbound priorities, most urgent first. When a slow client's send queue (``max_send_queue``
#: bytes) is full, queued messages are dropped lowest priority first; ``"critical"`` ones never
#: (the connection is closed with 1008 instead). Every drop is counted and reported as a
#: ``("dropped", conn, {...})`` event.
PRIORITIES: Dict[Priority, int] = {
    "critical": _native.PRIORITY_CRITICAL,
    "high": _native.PRIORITY_HIGH,
    "normal": _native.PRIORITY_NORMAL,
    "low": _native.PRIORITY_LOW,
    "background": _native.PRIORITY_BACKGROUND,
}


def _priority(priority: Priority) -> int:
    """The engine's number for ``priority``; -1 for a name it does not know (the engine refuses it)."""
    try:
        return PRIORITIES[priority]
    except (KeyError, TypeError):
        return -1
