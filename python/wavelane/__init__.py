"""Wavelane: a realtime WebSocket engine for Python backends.

The server core (HTTP upgrade, JWT auth, topics, fan-out, backpressure) runs natively on
SwiftNIO event loops inside ``libwavelane.so``; Python drains events and publishes::

    import wavelane

    with wavelane.Server(port=8765) as server:
        while True:
            for kind, conn, data in server.drain(timeout=1.0):
                if kind == "message":
                    server.publish("chat", data)

See ``docs/python-api.md`` for the whole API.
"""

from typing import Any

from ._server import (
    CONFIG_DEFAULTS,
    PRIORITIES,
    ClusterData,
    ConnectData,
    DroppedData,
    Event,
    EventKind,
    Priority,
    RefreshData,
    RpcData,
    Server,
    SubscribeRequestData,
)
from .config import load_config
from .publisher import Publisher
from .errors import ConfigError, StartError, WavelaneError

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # wavelane.Client needs the optional `websockets` package: imported on first use only.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'wavelane' has no attribute {name!r}")


def engine_version() -> str:
    """Version string of the loaded native engine (``libwavelane.so``)."""
    from . import _native

    return _native.version()


__all__ = [
    "Server",
    "Publisher",
    "Event",
    "EventKind",
    "Priority",
    "ConnectData",
    "SubscribeRequestData",
    "DroppedData",
    "ClusterData",
    "RefreshData",
    "RpcData",
    "CONFIG_DEFAULTS",
    "PRIORITIES",
    "WavelaneError",
    "ConfigError",
    "StartError",
    "engine_version",
    "load_config",
    "__version__",
]
