"""The engine's swift-log records reach Python's logging (logger "wavelane"), levels mapped,
structured fields kept, batched through drain()/start()/stop()."""

from __future__ import annotations

import logging

import pytest

import wavelane

from conftest import raw_upgrade


def test_engine_records_reach_python_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="wavelane")
    server = wavelane.Server(port=0, jwt_secret="s" * 32, log_level="debug")
    server.start()
    try:
        listening = [r for r in caplog.records if r.getMessage() == "listening"]
        assert listening and listening[0].levelno == logging.INFO
        assert listening[0].wavelane["port"] == str(server.port)
        sock, status, _ = raw_upgrade(server.port, headers=[("Authorization", "Bearer not-a-jwt")])
        sock.close()
        assert " 401 " in status
        deadline = 50
        while deadline and not any(r.getMessage() == "upgrade refused" for r in caplog.records):
            server.drain(16, 0.05)
            deadline -= 1
        refused = [r for r in caplog.records if r.getMessage() == "upgrade refused"]
        assert refused and refused[0].levelno == logging.DEBUG
        assert refused[0].wavelane["status"] == "401"
        assert refused[0].name == "wavelane"
    finally:
        server.stop(1)
    assert any(r.getMessage() == "stopped" for r in caplog.records)


def test_log_level_filters_in_the_engine(caplog):
    caplog.set_level(logging.DEBUG, logger="wavelane")
    server = wavelane.Server(port=0, jwt_secret="s" * 32, log_level="warning")
    server.start()
    try:
        sock, status, _ = raw_upgrade(server.port, headers=[("Authorization", "Bearer nope")])
        sock.close()
        server.drain(16, 0.2)
    finally:
        server.stop(1)
    assert not [r for r in caplog.records if r.name == "wavelane" and r.levelno < logging.WARNING]


def test_port_in_use_is_logged_as_error(caplog):
    caplog.set_level(logging.DEBUG, logger="wavelane")
    first = wavelane.Server(port=0)
    first.start()
    try:
        second = wavelane.Server(port=first.port)
        with pytest.raises(wavelane.StartError):
            second.start()
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "wavelane"]
        assert errors and "cannot listen" in errors[0].getMessage()
    finally:
        first.stop(1)


def test_bad_log_level_names_the_key():
    with pytest.raises(wavelane.ConfigError) as info:
        wavelane.Server(port=0, log_level="loud")
    assert info.value.key == "log_level"
