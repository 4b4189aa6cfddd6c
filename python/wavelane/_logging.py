"""The engine's log records, handed to Python's :mod:`logging` (logger ``wavelane``)."""

from __future__ import annotations

import json
import logging
from typing import Any

#: The engine's records go to this logger (swift-log levels mapped onto logging's).
logger = logging.getLogger("wavelane")
_LEVELS = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": 25,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _forward_logs(engine: Any) -> None:
    """Hand the engine's waiting log records to :data:`logger` (structured fields kept)."""
    text = engine.logs()
    while text:
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # pragma: no cover - the engine writes valid JSON
                continue
            level = _LEVELS.get(rec.get("level"), logging.INFO)
            if logger.isEnabledFor(level):
                fields = rec.get("metadata") or {}
                logger.log(level, "%s", rec.get("message", ""), extra={"wavelane": fields, "wavelane_time": rec.get("time")})
        text = engine.logs()
