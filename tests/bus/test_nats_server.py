"""``rxalpaca.testing.NatsServer``: the real nats-server the bus tests run on."""

from __future__ import annotations

import socket

import pytest

from rxalpaca.testing.nats_server import NatsServer


def _accepts(url: str) -> bool:
    host, port = url.removeprefix("nats://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


def test_kill_is_a_crash_and_restart_comes_back_on_the_same_port() -> None:
    with NatsServer(jetstream=False) as server:
        url = server.url
        assert server.running and _accepts(url)
        server.kill()
        assert not server.running and not _accepts(url)
        server.kill()  # killing a dead server is a no-op
        server.restart()
        assert server.running and server.url == url and _accepts(url)
    assert not server.running


def test_a_server_that_cannot_start_says_why() -> None:
    server = NatsServer(jetstream=False, args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="nats-server did not start"):
        server.start(timeout=10)
    assert not server.running
