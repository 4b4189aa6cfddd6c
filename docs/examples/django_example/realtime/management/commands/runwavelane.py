"""``python manage.py runwavelane``: the WebSocket server of this project (settings.WAVELANE).

Clients subscribe themselves to ``news:*`` and their own ``user:<sub>:…`` topics; the views publish
through Redis. Every client message is echoed to its sender. SIGTERM/SIGINT drain gracefully:
new upgrades get 503, each client is closed with 1001 once its queued messages went out.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import wavelane


class Command(BaseCommand):
    help = "Run the Wavelane WebSocket server (settings.WAVELANE)"

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        try:
            server = wavelane.Server(parse_json=True, **settings.WAVELANE)
            server.start()
        except (wavelane.ConfigError, wavelane.StartError) as exc:
            raise CommandError(str(exc))
        if not server.wait_for_redis(10):
            server.stop()
            raise CommandError(f"redis_url: {settings.WAVELANE['redis_url']} did not answer")
        self.stdout.write(f"wavelane listening on {server.port}, node {server.node_id}", ending="\n")
        self.stdout.flush()
        try:
            while not stopping:
                for kind, conn, data in server.drain(timeout=0.5):
                    if kind == "message":
                        server.send(conn, json.dumps({"type": "echo", "data": data}))
                    elif kind == "cluster":
                        self.stderr.write(f"redis: {data}")
        finally:
            server.drain_and_stop(5.0)
        self.stdout.write("wavelane stopped")
