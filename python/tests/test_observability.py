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
