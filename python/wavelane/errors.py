"""Every exception Wavelane raises, in one place.

* :class:`WavelaneError` — base class of the exceptions below.
* :class:`ConfigError` — a configuration key has a bad name, type or value. Also a
  :class:`ValueError`. ``key`` names the offending key.
* :class:`StartError` — :meth:`Server.start` could not bind or start (port in use, bad host...).
  Also an :class:`OSError`.
* :class:`ClientError` — base of :class:`wavelane.Client`'s errors: :class:`ConnectionClosed`
  (closed for good), :class:`SubscribeError` (a subscription refused), :class:`RPCError` (an RPC
  answered with an error). Also importable from :mod:`wavelane.client`.

Bad arguments to methods raise the built-in :class:`TypeError` (wrong type) or
:class:`ValueError` (bad value; e.g. a topic the engine refuses, an invalid close code, an object
that cannot be JSON-serialized); the message names the argument. Using a server whose native
engine was released raises :class:`RuntimeError`. The engine owns the rules (close codes,
priorities, ranges...): its messages name the argument or key and reach the caller unchanged, as
:class:`ValueError` (bad arguments) or :class:`ConfigError` (:func:`config_error_from_engine`).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

__all__ = [
    "WavelaneError", "ConfigError", "StartError", "ClientError", "ConnectionClosed", "SubscribeError", "RPCError",
    "config_error_from_engine",
]


class WavelaneError(Exception):
    """Base class of Wavelane's own exceptions."""


class ConfigError(WavelaneError, ValueError):
    """A configuration key is unknown or has a bad type or value.

    The message starts with the key's name (``"port: must be an int"``); :attr:`key` holds it
    (``None`` when the error does not concern one key).
    """

    def __init__(self, message: str, key: Optional[str] = None) -> None:
        super().__init__(message)
        self.key = key


class StartError(WavelaneError, OSError):
    """The server could not start (for example the port is already in use)."""



class ClientError(WavelaneError):
    """Base class of the client's errors."""


class ConnectionClosed(ClientError):
    """The client is closed for good (by :meth:`Client.close`, or by a close code after which
    reconnecting cannot help, or because the server refused the handshake). ``code`` and
    ``reason`` are the close code and reason (or the HTTP status of a refused handshake)."""

    def __init__(self, code: Optional[int], reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else f"connection closed: {reason}")
        self.code = code
        self.reason = reason


class SubscribeError(ClientError):
    """The server refused a subscription: ``code`` is its error code (``forbidden``,
    ``invalid_topic``, ``too_many_subscriptions``, or the application's code...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RPCError(ClientError):
    """The application answered an RPC with an error: ``code``, ``message`` and the whole
    ``error`` object it sent."""

    def __init__(self, error: Dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message', '')}")
        self.code = error.get("code")
        self.error = error


_KEY_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):")


def config_error_from_engine(message: str) -> ConfigError:
    """The engine's configuration message (``"port: must be in 0...65535, got 70000"``) as a
    :class:`ConfigError` whose ``key`` is the key it starts with."""
    m = _KEY_PREFIX.match(message)
    return ConfigError(message, m.group(1) if m else None)
