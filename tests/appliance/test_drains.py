"""Drain URLs, the RFC 5424 framing, and a sender against a real loopback socket (pure parts + TCP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance import drains as forwarding
from appliance.drains import Sender, rfc5424
from core.errors import ValidationError
from core.settings import Settings
from releaser import drains
from releaser.logstore import Line
from tests.drainservers import LogplexServer, SyslogServer, server_context
from tests.pki import TestCA


def wait(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


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
    assert drains.parse("syslog+tls://logs.example.com:6514", s).tls
    https = drains.parse("https://u:p@logs.example.com/in?x=1", s)
    assert (https.host, https.port, https.scheme, https.url) == (
        "logs.example.com",
        443,
        "https",
        "https://u:p@logs.example.com/in?x=1",
    )
    assert drains.parse("http://logs.example.com:8080/", s).port == 8080
    for bad in (
        "ftp://x.example.com",
        "syslog://x.example.com",
        "syslog://x:514/path",
        "syslog://:514",
        "https:///path",
        "https://x.example.com/a b",
        "https://x.example.com/\n",
        "https://x.example.com/#f",
        "syslog+tls://u@x:6514",
        "https://x.example.com:99999/",
    ):
        with pytest.raises(ValidationError):
            drains.parse(bad, s)
    for own in (f"syslog://127.0.0.1:{s.etcd_port}", f"https://localhost:{s.registry_port}/v2/"):
        with pytest.raises(ValidationError, match="platform's own port"):
            drains.parse(own, s)
    assert drains.redacted("https://u:secret@x.example.com:8443/in") == "https://u:***@x.example.com:8443/in"
    assert drains.redacted("https://x.example.com/in") == "https://x.example.com/in"


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


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA.make(tmp_path)


def started(sender: Sender) -> Sender:
    threading.Thread(target=sender.run, daemon=True).start()
    return sender


@pytest.fixture
def senders() -> Iterator[list[Sender]]:
    made: list[Sender] = []
    yield made
    for s in made:
        s.stop.set()


def lines(n: int, tag: str = "n") -> list[Line]:
    return [Line(1.0, "web.1", 1, f"{tag}{k}") for k in range(n)]


def test_syslog_over_tls_verifies_the_server_against_the_drain_ca_bundle(
    ca: TestCA, tmp_path: Path, senders: list[Sender]
) -> None:
    server = SyslogServer(server_context(ca, tmp_path))
    url = f"syslog+tls://localhost:{server.port}"
    trusting = Settings(drain_ca_bundle=ca.file)
    good = started(Sender("app", drains.parse(url, trusting), trusting))
    untrusting = started(Sender("app", drains.parse(url, Settings()), Settings()))
    senders += [good, untrusting]
    good.put(lines(300))
    untrusting.put(lines(5, "leak"))
    assert wait(lambda: len(server.messages) >= 300)
    assert [m.split(" ", 7)[7] for m in server.messages] == [f"n{k}" for k in range(300)]
    assert wait(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusting.error), untrusting.error
    assert untrusting.delivered == 0 and not any("leak" in m for m in server.messages)
    server.close()


def test_an_https_drain_posts_logplex_batches_retries_5xx_and_drops_a_rejected_batch(
    ca: TestCA, tmp_path: Path, senders: list[Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forwarding, "BATCH", 100)
    server = LogplexServer(server_context(ca, tmp_path), statuses=[503, 429])
    settings = Settings(drain_ca_bundle=ca.file)
    s = started(Sender("app", drains.parse(f"https://localhost:{server.port}/logs?t=1", settings), settings))
    senders.append(s)
    s.put(lines(250))
    assert wait(lambda: s.delivered == 250), (s.delivered, s.error)
    # none lost, in order
    assert [m.split(" ", 7)[7] for m in server.messages] == [f"n{k}" for k in range(250)]
    path, headers, found = server.posts[0]
    assert path == "/logs?t=1" and headers["Content-Type"] == "application/logplex-1"
    assert headers["Logplex-Msg-Count"] == str(len(found)) == "100"
    assert headers["Logplex-Drain-Token"].startswith("d.")
    assert len({p[1]["Logplex-Frame-Id"] for p in server.posts}) == 3
    server.statuses = [400]
    s.put(lines(10, "bad"))
    assert wait(lambda: s.dropped == 10), (s.dropped, s.error)
    assert "HTTP 400" in s.error and not any("bad" in m for m in server.messages)
    s.put(lines(3, "after"))
    assert wait(lambda: s.delivered == 253) and s.error == ""
    server.close()


def test_a_name_that_resolves_to_the_platform_s_own_port_is_refused_at_connect(
    senders: list[Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    settings = Settings(etcd_port=port)
    drain = drains.Drain(f"https://sneaky.example:{port}/", "sneaky.example", port, "http")
    real = socket.getaddrinfo
    monkeypatch.setattr(
        forwarding.socket, "getaddrinfo",
        lambda host, *a, **kw: real("127.0.0.1" if host == "sneaky.example" else host, *a, **kw),
    )  # fmt: skip
    s = started(Sender("app", drain, settings))
    senders.append(s)
    s.put(lines(1))
    assert wait(lambda: "platform's own port" in s.error), s.error
    listener.settimeout(0.3)
    with pytest.raises(TimeoutError):
        listener.accept()  # never even connected
    listener.close()
