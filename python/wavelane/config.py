"""One configuration model, three sources: a file, the environment, keyword arguments.

Later sources override earlier ones::

    server = wavelane.Server.from_config("wavelane.toml", port=9000)

* **File**: TOML (``.toml``; ``tomllib`` on 3.11+, ``tomli`` before), YAML (``.yaml``/``.yml``,
  needs PyYAML) or JSON (``.json``). Keys at the top level, or inside a ``[wavelane]`` table.
* **Environment**: ``WAVELANE_<KEY>`` in upper case, e.g. ``WAVELANE_PORT=9000``,
  ``WAVELANE_JWT_ALGORITHMS=HS256,RS256``, ``WAVELANE_COMPRESSION=false``,
  ``WAVELANE_WS_PATH=none``. ``WAVELANE_CONFIG`` names a file to load when no path is given.
  ``WAVELANE_SKIP_SWIFT_BUILD``, ``WAVELANE_LIB``, ``WAVELANE_KEEP_DEBUG_INFO``,
  ``WAVELANE_STATIC_DEPS``, ``WAVELANE_BUILD_TTY``, ``WAVELANE_WHEEL_SKIP_SWIFT_BUILD`` and
  ``WAVELANE_WHEEL_TOOLS`` belong to the build and are ignored here.
* **Keyword arguments**.

Unknown keys are errors in every source, and every error is a :class:`ConfigError` naming the
key (and the file or variable it came from). Keys and types come from the engine's schema
(:mod:`wavelane._schema`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ._schema import PYTHON_SETTINGS, SETTINGS, parse_env_value
from .errors import ConfigError

__all__ = ["load_config", "ENV_PREFIX", "PYTHON_KEYS"]

ENV_PREFIX = "WAVELANE_"
#: Environment variables with the prefix that are not configuration keys.
_RESERVED_ENV = frozenset({
    "WAVELANE_CONFIG",
    # setup.py and .ci/wheel (the build), not settings:
    "WAVELANE_SKIP_SWIFT_BUILD", "WAVELANE_LIB", "WAVELANE_KEEP_DEBUG_INFO", "WAVELANE_STATIC_DEPS",
    "WAVELANE_BUILD_TTY", "WAVELANE_WHEEL_SKIP_SWIFT_BUILD", "WAVELANE_WHEEL_TOOLS",
    # the test suite and the benchmark harness, not settings:
    "WAVELANE_REQUIRE_BROWSER", "WAVELANE_REQUIRE_EXAMPLES", "WAVELANE_DEMO_SCREENSHOT",
    "WAVELANE_BENCH_CACHE", "WAVELANE_BENCH_PYTHON", "WAVELANE_BENCH_PYTHONPATH",
})
#: Keys handled by the Python layer rather than the engine.
PYTHON_KEYS = frozenset(PYTHON_SETTINGS)


def _known(key: str) -> bool:
    return key in SETTINGS or key in PYTHON_KEYS


def _read_file(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot read: {exc.strerror or exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib as toml  # type: ignore[import-not-found,unused-ignore]
            except ImportError:  # Python < 3.11
                try:
                    import tomli as toml  # type: ignore[import-not-found,no-redef]
                except ImportError:
                    raise ConfigError(f"config file {p}: reading TOML on Python < 3.11 needs `pip install tomli`") from None
            data = toml.loads(raw.decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(f"config file {p}: reading YAML needs `pip install pyyaml`") from None
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        elif suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise ConfigError(f"config file {p}: unknown format {suffix!r} (use .toml, .yaml, .yml or .json)")
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' own errors
        raise ConfigError(f"config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: the top level must be a table/mapping")
    if set(data) == {"wavelane"} and isinstance(data["wavelane"], dict):
        data = data["wavelane"]
    for key in data:
        if not _known(key):
            raise ConfigError(f"{key}: unknown setting (in {p})", key)
    return dict(data)


def _read_env(env: Mapping[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var in _RESERVED_ENV:
            continue
        key = var[len(ENV_PREFIX):].lower()
        if not _known(key):
            raise ConfigError(f"{key}: unknown setting (from environment variable {var})", key)
        out[key] = parse_env_value(key, text, var)
    return out


def load_config(
    path: Optional[Union[str, "os.PathLike[str]"]] = None,
    *,
    env: Optional[Mapping[str, str]] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Merge file < environment < keyword arguments into one settings dict.

    ``path`` defaults to ``$WAVELANE_CONFIG`` when set. ``env`` defaults to ``os.environ``; pass
    ``{}`` to ignore the environment.
    """
    environ = os.environ if env is None else env
    if path is None and environ.get("WAVELANE_CONFIG"):
        path = environ["WAVELANE_CONFIG"]
    merged: Dict[str, Any] = {}
    if path is not None:
        merged.update(_read_file(path))
    merged.update(_read_env(environ))
    merged.update(overrides)
    return merged
