"""Drain URLs, the RFC 5424 framing, and a sender against a real loopback socket (pure parts + TCP)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from appliance import drains as forwarding
from appliance.drains import Sender, rfc5424
from core.errors import ValidationError
from core.settings import Settings
from releaser import drains
from releaser.logstore import Line


def frames(data: bytes) -> list[str]:
    """The texts of octet-counted RFC 5424 messages."""
    texts = []
    while data:
        size, _, rest = data.partition(b" ")
        texts.append(rest[: int(size)].decode().split(" ", 7)[7])
        data = rest[int(size) :]
    return texts


def test_drain_urls_are_checked() -> None:
    s = Settings()
    assert drains.parse("syslog://logs.example.com:514", s) == drains.Drain(
        "syslog://logs.example.com:514", "logs.example.com", 514
    )
    for bad in ("https://x.example.com", "syslog://x.example.com", "syslog://x:514/path", "syslog://:514"):
        with pytest.raises(ValidationError):
            drains.parse(bad, s)
    with pytest.raises(ValidationError, match="platform's own port"):
        drains.parse(f"syslog://127.0.0.1:{s.etcd_port}", s)


def test_rfc5424_octet_counted() -> None:
    frame = rfc5424("myapp", Line(0.25, "web.1", 3, "GET / ü"))
    size, _, msg = frame.partition(b" ")
    assert int(size) == len(msg)
    assert msg.decode() == "<14>1 1970-01-01T00:00:00.250000Z deis myapp web.1 - - GET / ü"


def test_a_sender_delivers_in_order_and_a_dead_one_counts_and_never_blocks(monkeypatch) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                got.extend(chunk)

    threading.Thread(target=serve, daemon=True).start()
    live = Sender("app", drains.Drain(f"syslog://127.0.0.1:{port}", "127.0.0.1", port))
    threading.Thread(target=live.run, daemon=True).start()
    live.put([Line(1.0, "web.1", 1, f"n{k}") for k in range(1000)])
    deadline = time.monotonic() + 5
    while live.delivered < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    live.stop.set()
    assert live.delivered == 1000 and live.dropped == 0
    time.sleep(0.2)
    assert frames(bytes(got)) == [f"n{k}" for k in range(1000)]
    server.close()

    monkeypatch.setattr(forwarding, "QUEUE", 100)
    dead = Sender("app", drains.Drain(f"syslog://127.0.0.1:{port}", "127.0.0.1", port))  # closed now
    threading.Thread(target=dead.run, daemon=True).start()
    started = time.monotonic()
    for _ in range(10):
        dead.put([Line(1.0, "web.1", 1, "x")] * 50)
    assert time.monotonic() - started < 0.5  # never waits for the drain
    time.sleep(0.3)
    dead.stop.set()
    assert dead.delivered == 0 and dead.dropped >= 400 and dead.error
