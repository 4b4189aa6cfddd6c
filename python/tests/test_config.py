"""Configuration from a file, the environment and keyword arguments (later wins)."""

from __future__ import annotations

import json

import pytest

import wavelane
from wavelane.config import load_config


def test_file_then_env_then_kwargs(tmp_path):
    f = tmp_path / "wavelane.toml"
    f.write_text('port = 9100\nping_interval = 7\njwt_algorithms = ["HS256"]\nws_path = "/ws"\n')
    cfg = load_config(f, env={"WAVELANE_PORT": "9200", "WAVELANE_COMPRESSION": "off"}, idle_timeout=30)
    assert cfg["port"] == 9200  # env beats file
    assert cfg["ping_interval"] == 7
    assert cfg["jwt_algorithms"] == ["HS256"]
    assert cfg["compression"] is False
    assert cfg["idle_timeout"] == 30
    cfg = load_config(f, env={"WAVELANE_PORT": "9200"}, port=9300)
    assert cfg["port"] == 9300  # kwargs beat env


def test_wavelane_table_and_json_and_config_variable(tmp_path):
    f = tmp_path / "settings.toml"
    f.write_text("[wavelane]\nmax_connections = 5\n")
    assert load_config(f, env={})["max_connections"] == 5
    j = tmp_path / "settings.json"
    j.write_text(json.dumps({"max_subscriptions": 3}))
    assert load_config(env={"WAVELANE_CONFIG": str(j)})["max_subscriptions"] == 3


def test_env_parsing():
    cfg = load_config(
        env={
            "WAVELANE_JWT_ALGORITHMS": "HS256, RS256",
            "WAVELANE_WS_PATH": "none",
            "WAVELANE_IDLE_TIMEOUT": "12.5",
            "WAVELANE_SKIP_SWIFT_BUILD": "1",  # build variables, not settings
            "WAVELANE_STATIC_DEPS": "0",
            "WAVELANE_BUILD_TTY": "0",
            "WAVELANE_WHEEL_SKIP_SWIFT_BUILD": "1",
            "WAVELANE_WHEEL_TOOLS": "/tmp/tools",
            "WAVELANE_REQUIRE_BROWSER": "1",  # test-suite switches (.ci/run exports them)
            "WAVELANE_REQUIRE_EXAMPLES": "1",
            "WAVELANE_BENCH_CACHE": "/tmp/bench",
            "OTHER": "x",
        }
    )
    assert cfg == {"jwt_algorithms": ["HS256", "RS256"], "ws_path": None, "idle_timeout": 12.5}


@pytest.mark.parametrize(
    "env, key",
    [
        ({"WAVELANE_PORTT": "1"}, "portt"),
        ({"WAVELANE_PORT": "eighty"}, "port"),
        ({"WAVELANE_COMPRESSION": "maybe"}, "compression"),
        ({"WAVELANE_PING_INTERVAL": "soon"}, "ping_interval"),
    ],
)
def test_env_errors_name_the_key(env, key):
    with pytest.raises(wavelane.ConfigError) as info:
        load_config(env=env)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense_key = 1\n")
    with pytest.raises(wavelane.ConfigError) as info:
        load_config(bad, env={})
    assert info.value.key == "nonsense_key"
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(wavelane.ConfigError, match="broken.toml"):
        load_config(broken, env={})
    with pytest.raises(wavelane.ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(wavelane.ConfigError, match="unknown format"):
        (tmp_path / "x.ini").write_text("port=1")
        load_config(tmp_path / "x.ini", env={})


def test_values_are_checked_by_the_engine(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text("port = 70000\n")
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server.from_config(f, env={})
    assert info.value.key == "port"


def test_from_config_starts_a_working_server(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('host = "127.0.0.1"\nport = 0\nparse_json = true\n')
    server = wavelane.Server.from_config(f, env={"WAVELANE_MAX_CONNECTIONS": "10"})
    server.start()
    try:
        assert server.port > 0
        assert server.stats()["connections_active"] == 0
    finally:
        server.stop()


def test_python_layer_keys_come_from_every_source(tmp_path):
    j = tmp_path / "settings.json"
    j.write_text(json.dumps({"client_js": False, "parse_json": True}))
    cfg = load_config(j, env={})
    assert cfg == {"client_js": False, "parse_json": True}
    server = wavelane.Server(**cfg, port=0)  # accepted by Server, not sent to the engine
    assert server is not None
