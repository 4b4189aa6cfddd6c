"""JSON out of Python values for the engine (orjson when available, same output)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Union

try:  # orjson is optional: faster, same output for what we serialize
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment,unused-ignore]


def _dumps(obj: Any, argname: str) -> str:
    """Serialize ``obj`` to compact JSON (orjson when available)."""
    try:
        if _orjson is not None:
            return _orjson.dumps(obj, option=_orjson.OPT_NON_STR_KEYS).decode("utf-8")
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{argname} is not JSON-serializable: {exc}") from None


def _topics_json(topics: Union[str, Iterable[str]], argname: str = "topics") -> str:
    if isinstance(topics, str):
        items = [topics]
    else:
        try:
            items = list(topics)
        except TypeError:
            raise TypeError(
                f"{argname} must be a str or an iterable of str, not {type(topics).__name__}"
            ) from None
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"{argname} must contain only str, found {type(t).__name__}")
    return json.dumps(items, ensure_ascii=False)
