"""/health, /metrics (valid Prometheus text, checked with prometheus_client's parser), stats()."""

from __future__ import annotations

import pytest

from conftest import http_get, open_client, request, run

parser = pytest.importorskip("prometheus_client.parser", reason="pip install prometheus_client")


def _families(port):
    status, headers, body = http_get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return {f.name: f for f in parser.text_string_to_metric_families(body.decode())}


def _sample(families, name, **labels):
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_are_valid_prometheus_and_count_real_traffic(server):
    srv, events = server

    async def scenario():
        ws, _ = await open_client(srv)
        await request(ws, {"type": "subscribe", "topics": ["m"], "id": 1})
        for i in range(5):
            srv.publish("m", i)
        for _ in range(5):
            await ws.recv()
        await ws.send("in")
        await events.await_kind("message")
        await ws.close()
        await events.await_kind("disconnect")

    run(scenario())
    fams = _families(srv.port)
    assert _sample(fams, "wavelane_publications_total") == 5
    assert _sample(fams, "wavelane_deliveries_total") == 5
    assert _sample(fams, "wavelane_connections_accepted_total") == 1
    assert _sample(fams, "wavelane_messages_in_total") == 2  # the subscribe request and "in"
    assert _sample(fams, "wavelane_connections_active") == 0
    assert _sample(fams, "wavelane_handshake_duration_seconds_count") == 1
    assert _sample(fams, "wavelane_publish_duration_seconds_count") == 5
    assert _sample(fams, "wavelane_connections_rejected_total", reason="auth") == 0
    # stats() reports the same figures.
    stats = srv.stats()
    assert stats["publications"] == 5 and stats["deliveries"] == 5 and stats["connections_accepted"] == 1


def test_rejections_are_counted_by_reason(make_server):
    srv, _ = make_server(jwt_secret="k" * 32)
    from conftest import raw_upgrade

    sock, status, _ = raw_upgrade(srv.port)
    sock.close()
    assert " 401 " in status
    fams = _families(srv.port)
    assert _sample(fams, "wavelane_connections_rejected_total", reason="auth") == 1


def test_health_reports_ok_then_draining(server):
    srv, _ = server
    status, headers, body = http_get(srv.port, "/health")
    assert status == 200 and b'"status":"ok"' in body


def test_metrics_and_health_can_be_switched_off(make_server):
    srv, _ = make_server(metrics=False)
    assert http_get(srv.port, "/metrics")[0] == 404
    assert http_get(srv.port, "/health")[0] == 200
    srv, _ = make_server(health=False)
    assert http_get(srv.port, "/health")[0] == 404
    assert http_get(srv.port, "/metrics")[0] == 200


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_admin_listener_serves_metrics_and_health_instead_of_the_public_port(make_server):
    admin = _free_port()
    srv, _ = make_server(admin_port=admin)
    assert http_get(srv.port, "/metrics")[0] == 404
    assert http_get(srv.port, "/health")[0] == 404
    status, _, body = http_get(admin, "/health")
    assert status == 200 and b'"status":"ok"' in body
    assert "wavelane_connections_active" in _families(admin)
    assert http_get(admin, "/")[0] == 404  # nothing else there: no routes, no WebSocket
    # The WebSocket port still serves clients.

    async def main():
        ws, _ = await open_client(srv)
        assert await request(ws, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
        await ws.close()

    run(main())
    # Switched off there too.
    admin2 = _free_port()
    make_server(admin_port=admin2, metrics=False)
    assert http_get(admin2, "/metrics")[0] == 404
    assert http_get(admin2, "/health")[0] == 200


def test_admin_settings_are_checked():
    import wavelane

    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(admin_host="0.0.0.0")
    assert e.value.key == "admin_host"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(port=9000, admin_port=9000)
    assert e.value.key == "admin_port"
    with pytest.raises(wavelane.ConfigError) as e:
        wavelane.Server(max_message_size=1 << 20, max_partial_bytes=1 << 19)
    assert e.value.key == "max_partial_bytes"
