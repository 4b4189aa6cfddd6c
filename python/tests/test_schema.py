"""The configuration schema (python/wavelane/_schema.py): one table, owned by the engine.

docs/configuration.md's type and default columns are checked against it here, so a setting added,
removed or changed in the engine and not in the docs (or the reverse) fails this file.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Dict

import pytest
from websockets.exceptions import ConnectionClosed

import wavelane
from wavelane import _native, _schema
from wavelane.config import load_config
from conftest import open_client, recv, run

ROOT = Path(__file__).resolve().parents[2]
YEAR = 86400 * 365


# -- how docs/configuration.md spells a schema entry ---------------------------------------------

def _num(n: float) -> str:
    v: Any = int(n) if float(n).is_integer() else n
    if isinstance(v, int) and v >= 1 << 20 and v & (v - 1) == 0:
        return f"2^{v.bit_length() - 1}"
    if isinstance(v, int) and v >= 10**6 and str(v).strip("0") == "1":
        return f"10^{len(str(v)) - 1}"
    return str(v)


def _type_cell(e: Dict[str, Any]) -> str:
    kind = e["type"]
    if kind == "bool":
        return "bool"
    if kind == "int":
        return f"int {_num(e['min'])}–{_num(e['max'])}"
    if kind == "seconds":
        lo = e.get("min", 0)
        low = f"≥ {_num(lo)}" if lo > 0 else ("≥ 0" if e.get("zero_allowed") else "> 0")
        hi = "1 year" if e["max"] == YEAR else _num(e["max"])
        return f"seconds {low}, ≤ {hi}"
    if kind == "rate":
        return f"per second {_num(e['min'])}–{_num(e['max'])}"
    if kind == "string":
        return "str or None" if e["nullable"] else "str"
    if kind == "string_list":
        return "list of str"
    if kind == "choice":
        return "one of " + ", ".join(e["choices"])
    raise AssertionError(f"{e['key']}: a schema type the docs do not know: {kind}")


def _default_literal(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return f"`{v}`"
    return "`" + json.dumps(v) + "`"


def _doc_rows() -> Dict[str, list]:
    rows: Dict[str, list] = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        m = re.match(r"^\| `([a-z_]+)` \| ([^|]*) \| ([^|]*) \|", line)
        if m:
            rows.setdefault(m.group(1), []).append((m.group(2).strip(), m.group(3).strip()))
    return rows


def test_docs_table_matches_the_schema():
    rows = _doc_rows()
    problems = []
    for e in _schema.SCHEMA:
        key = e["key"]
        found = rows.get(key)
        if not found:
            problems.append(f"{key}: not in docs/configuration.md")
            continue
        if len(found) > 1:
            problems.append(f"{key}: {len(found)} rows")
        type_cell, default_cell = found[0]
        if type_cell != _type_cell(e):
            problems.append(f"{key}: type {type_cell!r}, schema says {_type_cell(e)!r}")
        if not default_cell.startswith(_default_literal(e["default"])):
            problems.append(f"{key}: default {default_cell!r}, schema says {_default_literal(e['default'])}")
    for key in rows:
        if key not in _schema.SETTINGS and key not in _schema.PYTHON_SETTINGS:
            problems.append(f"{key}: documented but not a setting")
    for key, e in _schema.PYTHON_SETTINGS.items():
        if key in rows:
            assert rows[key][0][0] == _type_cell(e) and rows[key][0][1].startswith(_default_literal(e["default"]))
    assert not problems, "\n".join(problems)


def test_the_docs_check_catches_drift():
    e = dict(_schema.SETTINGS["port"])
    assert _type_cell(e) == "int 0–65535"
    e["max"] = 65534
    assert _type_cell(e) != "int 0–65535"
    assert _default_literal(None) == "`None`" and _default_literal(False) == "`False`"
    assert _default_literal("info") == '`"info"`' and _default_literal(0) == "`0`" and _default_literal([]) == "`[]`"
    assert _type_cell(_schema.SETTINGS["max_message_size"]) == "int 16–2^30"


# -- the schema is the engine's, and Python's defaults are its -----------------------------------

def test_python_settings_defaults_are_the_server_signatures():
    import inspect

    params = inspect.signature(wavelane.Server.__init__).parameters
    for key, entry in _schema.PYTHON_SETTINGS.items():
        assert params[key].default == entry["default"], key
    assert not set(_schema.PYTHON_SETTINGS) & set(_schema.SETTINGS)
    # Engine settings that are parameters of Server(): a default there is the schema's (or None:
    # "the engine's default").
    shared = [name for name in params if name in _schema.SETTINGS]
    assert {"host", "port", "jwt_secret", "threads"} <= set(shared)
    for name in shared:
        assert params[name].default in (None, _schema.SETTINGS[name]["default"]), name


def test_schema_comes_from_the_engine():
    exported = json.loads(_native.config_schema())
    assert exported == _schema.SCHEMA
    assert [e["key"] for e in exported][:2] == ["host", "port"]
    assert all(e["doc"] for e in exported)


def test_config_defaults_are_the_schema_defaults():
    assert wavelane.CONFIG_DEFAULTS == {e["key"]: e["default"] for e in _schema.SCHEMA}
    assert wavelane.CONFIG_DEFAULTS["log_level"] == "info"
    assert wavelane.CONFIG_DEFAULTS["port"] == 8765
    assert wavelane.CONFIG_DEFAULTS["jwt_require_exp"] is False


def test_every_default_reaches_the_engine_from_the_environment():
    """Each setting's default, written as an environment variable, is parsed by its schema type
    back to the default and accepted by the engine."""
    env: Dict[str, str] = {}
    for e in _schema.SCHEMA:
        v = e["default"]
        if v is None or e["key"] == "admin_host":  # admin_host needs admin_port (unset by default)
            continue
        text = ("true" if v else "false") if isinstance(v, bool) else ",".join(v) if isinstance(v, list) else str(v)
        env["WAVELANE_" + e["key"].upper()] = text
    cfg = load_config(env=env)
    for key, value in cfg.items():
        assert value == _schema.SETTINGS[key]["default"], key
    wavelane.Server(**cfg)


def test_log_level_from_the_environment_and_a_config_file(tmp_path):
    assert load_config(env={"WAVELANE_LOG_LEVEL": "debug"}) == {"log_level": "debug"}
    server = wavelane.Server.from_config(env={"WAVELANE_LOG_LEVEL": "debug"}, port=0)
    assert server.config["log_level"] == "debug"
    f = tmp_path / "w.toml"
    f.write_text('log_level = "debug"\nport = 0\n')
    assert wavelane.Server.from_config(f, env={}).config["log_level"] == "debug"
    f.write_text('log_level = "loud"\n')
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server.from_config(f, env={})
    assert info.value.key == "log_level"
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server.from_config(env={"WAVELANE_LOG_LEVEL": "loud"})
    assert info.value.key == "log_level"


def test_types_come_from_the_schema():
    for key, bad in [("port", "80"), ("log_level", 5), ("compression", 1), ("client_topics", "a:*"),
                     ("ping_interval", True), ("rate_limit_messages", "1"), ("tls_cert", None)]:
        with pytest.raises(wavelane.ConfigError) as info:
            wavelane.Server(**{key: bad})
        assert info.value.key == key, key
    # null where the schema says it is a value of its own
    for key in [e["key"] for e in _schema.SCHEMA if e["nullable"]]:
        wavelane.Server(**{key: None})


def test_no_import_circle_between_config_and_server():
    def imports(name: str) -> set:
        tree = ast.parse((ROOT / "python" / "wavelane" / name).read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                out.add(node.module or "")
        return out

    assert "_server" not in imports("config.py")
    assert imports("_schema.py") <= {"_native", "errors", ""}
    assert "config" in imports("_server.py")


# -- the engine owns the rules ----------------------------------------------------------------------

@pytest.mark.parametrize("code", [1003, 1007, 1009, 1012, 1013])
def test_close_accepts_every_code_the_engine_allows(server, code):
    srv, events = server

    async def main():
        ws, ready = await open_client(srv)
        conn = int(ready["conn"])
        await events.await_kind("connect", conn)
        assert srv.close(conn, code, "later") is True
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == code

    run(main())


def test_close_and_disconnect_user_report_the_engines_rule(server):
    srv, _ = server
    for call in (lambda c: srv.close(1, c), lambda c: srv.disconnect_user("u", c)):
        with pytest.raises(ValueError, match=r"^code: 1005 is not a close code an application may send"):
            call(1005)
        with pytest.raises(ValueError, match=r"^code: "):
            call(1 << 40)
    with pytest.raises(ValueError, match=r"^reason: longer than 123 bytes"):
        srv.close(1, 1000, "x" * 124)
    assert srv.disconnect_user("nobody", 1012) == 0


def test_priority_names_are_checked_by_the_engine(server):
    srv, _ = server
    with pytest.raises(ValueError, match=r"^priority: must be 0 \(critical\)"):
        srv.publish("t", "x", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^priority: "):
        srv.send(1, "x", priority=["low"])  # type: ignore[arg-type]
    assert srv.send(12345, "x", priority="background") is False
