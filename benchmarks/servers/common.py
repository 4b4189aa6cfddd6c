"""Shared by every benchmark server script: the app protocol, the JWT key, the envelope.

Every engine runs the same application:

* clients authenticate with a HS256 JWT at the handshake (``Authorization: Bearer``);
* the first frame a client gets is a JSON ``ready`` (engine-native where the engine has one);
* ``{"type":"subscribe","topics":[..],"id":n}`` subscribes and is answered with
  ``{"type":"subscribed",...}`` (engine-native for Wavelane);
* a publication goes out as ``{"type":"message","topic":T,"offset":n,"data":"<payload>"}``
  (Wavelane builds it natively, the other apps build the very same bytes in Python);
* text starting with ``e`` is echoed to its sender (round trip), text starting with ``i`` is
  counted (inbound), ``{"type":"bench",...}`` drives the benchmark (see ``Bench``).
"""

from __future__ import annotations

import json
import os
import sys
import time

JWT_SECRET = "wavelane-bench-secret-0123456789abcdef"  # >= 32 bytes (HS256)


def bearer_sub(auth: str):
    """The `sub` of an `Authorization: Bearer <HS256 JWT>` header value, or None (the peers'
    handshake check; Wavelane and wse-server verify natively)."""
    import jwt

    if not auth.startswith("Bearer "):
        return None
    try:
        return jwt.decode(auth[7:], JWT_SECRET, algorithms=["HS256"]).get("sub")
    except jwt.PyJWTError:
        return None


def envelope(topic: str, offset: int, payload: str) -> str:
    # identical bytes to Wavelane's native envelope for a str payload without escapes
    return '{"type":"message","topic":"%s","offset":%d,"data":"%s"}' % (topic, offset, payload)


def payload(size: int) -> str:
    return ("p" * size)[:size]


def announce(port: int) -> None:
    """Tell run.py the server listens (one line on stdout)."""
    sys.stdout.write("LISTENING %d %d\n" % (os.getpid(), port))
    sys.stdout.flush()


class Bench:
    """Counters and the ``bench`` command logic shared by the apps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.inbound = 0
        self.first = 0.0
        self.last = 0.0
        self.drain_result = None

    def count(self, n: int = 1) -> None:
        now = time.perf_counter()
        if self.inbound == 0:
            self.first = now
        self.inbound += n
        self.last = now

    def stats(self) -> str:
        span = self.last - self.first
        return json.dumps(
            {
                "type": "stats",
                "inbound": self.inbound,
                "span": span,
                "rate": (self.inbound / span) if span > 0 else 0.0,
                "drain": self.drain_result,
            }
        )


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (root may raise the hard limit too); returns the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in ((max(want, hard), max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
