"""The configuration schema: every setting's key, type, default, range and doc line.

The engine owns the table (``ConfigSchema.settings`` in ``Sources/WavelaneEngine/ConfigSchema.swift``)
and exports it through the C ABI (``wl_config_schema``); this module reads that export once and
derives everything the Python layer needs from it: :data:`CONFIG_DEFAULTS`, the type check of
keyword arguments and the parsing of ``WAVELANE_*`` environment variables. Python checks types
only; values and ranges are the engine's (its message names the key).

Two settings belong to the Python layer (:data:`PYTHON_SETTINGS`): ``parse_json`` and ``client_js``.
This module imports nothing of the package but :mod:`._native` and :mod:`.errors`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping

from . import _native
from .errors import ConfigError

__all__ = ["SCHEMA", "SETTINGS", "CONFIG_DEFAULTS", "PYTHON_SETTINGS", "check_types", "parse_env_value"]

#: The engine's schema: a list of ``{"key", "type", "default", "nullable", "min", "max",
#: "zero_allowed", "choices", "doc"}`` dicts in documentation order (see ``wavelane.h``).
SCHEMA: List[Dict[str, Any]] = json.loads(_native.config_schema())

#: Settings of the Python layer, in the schema's shape.
PYTHON_SETTINGS: Dict[str, Dict[str, Any]] = {
    "parse_json": {"key": "parse_json", "type": "bool", "default": False, "nullable": False,
                   "doc": "decode text messages as JSON before they reach the application"},
    "client_js": {"key": "client_js", "type": "bool", "default": True, "nullable": False,
                  "doc": "serve the browser client at GET /wavelane.js"},
}

#: Every engine setting by key.
SETTINGS: Dict[str, Dict[str, Any]] = {entry["key"]: entry for entry in SCHEMA}

#: Engine configuration keys and their defaults (``None`` for keys that are unset by default).
CONFIG_DEFAULTS: Dict[str, Any] = {key: entry["default"] for key, entry in SETTINGS.items()}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"", "none", "null"}


def _setting(key: str) -> Dict[str, Any]:
    return SETTINGS.get(key) or PYTHON_SETTINGS[key]


def check_types(cfg: Mapping[str, Any]) -> None:
    """Type-check known keys (the engine checks values and ranges, and rejects unknown keys)."""
    for key, value in cfg.items():
        entry = SETTINGS.get(key)
        if entry is None:
            continue
        kind = entry["type"]
        if value is None and entry["nullable"]:
            continue
        if kind in ("string", "choice"):
            if not isinstance(value, str):
                also = " or None" if entry["nullable"] else ""
                raise ConfigError(f"{key}: must be a str{also}, not {type(value).__name__}", key)
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}: must be an int, not {type(value).__name__}", key)
        elif kind in ("seconds", "rate"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                what = "a number of seconds" if kind == "seconds" else "a number (per second)"
                raise ConfigError(f"{key}: must be {what}, not {type(value).__name__}", key)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: must be a bool, not {type(value).__name__}", key)
        elif kind == "string_list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key}: must be a list of str, not {type(value).__name__}", key)
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key}: every item must be a str", key)


def parse_env_value(key: str, text: str, var: str) -> Any:
    """The value of environment variable ``var`` (``text``) for setting ``key``, by its schema type."""
    entry = _setting(key)
    kind = entry["type"]
    t = text.strip()
    low = t.lower()
    if entry.get("nullable") and low in _NONE:
        return None
    if kind == "bool":
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key}: {var}={text!r} is not a boolean (use true/false)", key)
    if kind == "int":
        try:
            return int(t)
        except ValueError:
            raise ConfigError(f"{key}: {var}={text!r} is not an integer", key) from None
    if kind in ("seconds", "rate"):
        try:
            return float(t)
        except ValueError:
            raise ConfigError(f"{key}: {var}={text!r} is not a number", key) from None
    if kind == "string_list":
        return [part.strip() for part in t.split(",") if part.strip()]
    if kind == "choice":
        return t
    return text
