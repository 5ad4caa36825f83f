"""Forwarding apps' log lines to their drains (releaser.drains), in the appliance.

The log store's writer hands each app's new lines over (`LogStore.listeners`) without waiting: each
drain has its own bounded queue (QUEUE lines) and its own sender thread, which sends batches through
its transport and after a failure tries again with a growing pause (up to BACKOFF). A line that finds
the queue full is dropped and counted: a drain that is down never blocks the app, its logs or the
other drains, and `drains` shows what it delivered, holds and dropped.

Transports, one per kind of drain (a small interface: send a batch, close):
- syslog, syslog+tls: one TCP (TLS) connection, RFC 5424 messages with RFC 6587 octet counting;
- https, http: each batch one POST in Heroku's logplex format (Content-Type application/logplex-1,
  Logplex-Msg-Count, Logplex-Frame-Id, Logplex-Drain-Token; the body the same octet-counted messages),
  on a kept-alive connection. 2xx is delivered; 408, 429 and 5xx are tried again (the batch stays
  queued); any other answer (a redirect is never followed) drops the batch and counts it.
TLS verifies the server's certificate and name against the system CAs plus the operator's
`drain_ca_bundle`. Addresses are resolved at connect time and the platform's own loopback ports are
refused then too (a name that resolves to 127.0.0.1 is no way around releaser.drains' check).

The drains of an app are read from etcd once at start and again whenever a command changes them
(`refresh`): nothing is polled.

    <14>1 2026-12-02T10:00:00.123456Z deis myapp web.1 - - GET /
"""

from __future__ import annotations

import base64
import collections
import hashlib
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

from core.settings import Settings
from releaser import apps, drains
from releaser.logstore import Line, LogStore
from releaser.store import Store

log = logging.getLogger("deis.drains")

QUEUE = 10_000  # lines per drain waiting to be sent ...
QUEUE_BYTES = 4 * 1024 * 1024  # ... and their size
BATCH = 500
BACKOFF = 10.0
TIMEOUT = 5.0  # connect and send
PRI = 14  # facility user (1), severity informational (6)
HOSTNAME = "deis"
RETRIED_STATUSES = (408, 429)


class Rejected(Exception):
    """The drain answered that this batch will never be taken: drop it, count it."""


def rfc5424(app: str, line: Line) -> bytes:
    """One syslog message (RFC 5424), octet-counted (RFC 6587 3.4.1)."""
    stamp = datetime.fromtimestamp(line.time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    procid = "".join(c for c in line.source if 33 <= ord(c) <= 126)[:128] or "-"
    msg = f"<{PRI}>1 {stamp} {HOSTNAME} {app[:48]} {procid} - - {line.text}".encode()
    return f"{len(msg)} ".encode() + msg


def tls_context(settings: Settings | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings is not None and settings.drain_ca_bundle is not None:
        context.load_verify_locations(cafile=str(settings.drain_ca_bundle))
    return context


def connect(drain: drains.Drain, context: ssl.SSLContext, refused: frozenset[int]) -> socket.socket:
    """A connected (TLS-wrapped, for TLS kinds) socket to the drain; OSError if it cannot be reached
    or resolves to one of the platform's own loopback ports."""
    last: OSError = OSError(f"{drain.host} did not resolve")
    for family, kind, proto, _, addr in socket.getaddrinfo(drain.host, drain.port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(addr[0])
        if (ip.is_loopback or ip.is_unspecified) and drain.port in refused:
            raise OSError(f"{drain.host} resolves to the platform's own port {drain.port}: refused")
        sock = socket.socket(family, kind, proto)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if drain.tls:
            try:
                return context.wrap_socket(sock, server_hostname=drain.host)
            except OSError:
                sock.close()
                raise
        return sock
    raise last


class Transport(Protocol):
    def send(self, frames: list[bytes]) -> None:
        """Deliver the batch; OSError: try again later; Rejected: never."""

    def close(self) -> None: ...


class SyslogTransport:
    def __init__(self, drain: drains.Drain, context: ssl.SSLContext, refused: frozenset[int]) -> None:
        self.drain, self.context, self.refused = drain, context, refused
        self.sock: socket.socket | None = None

    def send(self, frames: list[bytes]) -> None:
        if self.sock is None:
            self.sock = connect(self.drain, self.context, self.refused)
        try:
            self.sock.sendall(b"".join(frames))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class HttpTransport:
    """Logplex-framed POSTs on one kept-alive connection (http.client: the socket is ours, so the
    address check above holds for every connection it makes)."""

    def __init__(self, drain: drains.Drain, context: ssl.SSLContext, refused: frozenset[int]) -> None:
        self.drain, self.context, self.refused = drain, context, refused
        parts = urlsplit(drain.url)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {
            "Content-Type": "application/logplex-1",
            "User-Agent": "deis-drains",
            "Logplex-Drain-Token": "d." + hashlib.sha256(drain.url.encode()).hexdigest()[:32],
        }
        if parts.username is not None:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
        self.conn: http.client.HTTPConnection | None = None

    def send(self, frames: list[bytes]) -> None:
        if self.conn is None:
            conn = http.client.HTTPConnection(self.drain.host, self.drain.port, timeout=TIMEOUT)
            conn.sock = connect(self.drain, self.context, self.refused)
            self.conn = conn
        headers = self.headers | {"Logplex-Msg-Count": str(len(frames)), "Logplex-Frame-Id": uuid.uuid4().hex}
        try:
            self.conn.request("POST", self.target, body=b"".join(frames), headers=headers)
            resp = self.conn.getresponse()
            resp.read(65536)
            status, closing = resp.status, resp.will_close
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise OSError(str(exc) or type(exc).__name__) from exc
        if closing:
            self.close()
        if 200 <= status < 300:
            return
        if status in RETRIED_STATUSES or status >= 500:
            raise OSError(f"HTTP {status}")
        raise Rejected(f"HTTP {status}: batch dropped")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def transport(drain: drains.Drain, settings: Settings | None) -> Transport:
    kind = SyslogTransport if drain.scheme in drains.SYSLOG_SCHEMES else HttpTransport
    return kind(drain, tls_context(settings), drains.own_ports(settings) if settings else frozenset())


@dataclass
class Sender:
    app: str
    drain: drains.Drain
    settings: Settings | None = None
    queue: collections.deque[Line] = field(default_factory=collections.deque)
    bytes: int = 0  # of the queued lines, roughly
    delivered: int = 0
    dropped: int = 0
    error: str = ""
    wake: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)

    def put(self, lines: list[Line]) -> None:
        with self.wake:
            for line in lines:
                size = len(line.text) + 64
                if len(self.queue) >= QUEUE or self.bytes + size > QUEUE_BYTES:
                    self.dropped += 1
                    continue
                self.queue.append(line)
                self.bytes += size
            self.wake.notify()

    def run(self) -> None:
        link = transport(self.drain, self.settings)
        pause = 0.5
        while not self.stop.is_set():
            with self.wake:
                while not self.queue and not self.stop.is_set():
                    self.wake.wait(1.0)
                batch = [self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))]
                self.bytes -= sum(len(ln.text) + 64 for ln in batch)
            if not batch:
                continue
            try:
                link.send([rfc5424(self.app, ln) for ln in batch])
                self.delivered += len(batch)
                self.error, pause = "", 0.5
            except Rejected as exc:
                self.error = str(exc)
                self.dropped += len(batch)
            except (OSError, ValueError) as exc:  # ValueError: a bad certificate file, a bad address
                self.error = str(exc) or type(exc).__name__
                self._put_back(batch)
                self.stop.wait(pause)
                pause = min(BACKOFF, pause * 2)
        link.close()

    def _put_back(self, batch: list[Line]) -> None:
        with self.wake:
            self.queue.extendleft(reversed(batch))
            self.bytes += sum(len(ln.text) + 64 for ln in batch)
            while len(self.queue) > QUEUE or self.bytes > QUEUE_BYTES:
                self.bytes -= len(self.queue.pop().text) + 64  # the newest go: the order stays
                self.dropped += 1


class Forwarder:
    def __init__(self, settings: Settings, store: Store, logs: LogStore) -> None:
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._senders: dict[str, list[Sender]] = {}  # app -> its drains' senders
        logs.listeners.append(self.lines)

    def lines(self, app: str, lines: list[Line]) -> None:
        """The store wrote these lines of `app` (called from its writer: never blocks)."""
        for sender in self._senders.get(app, ()):
            sender.put(lines)

    def load_all(self) -> None:
        for app in apps.list_apps(self.store):
            self.refresh(app.name)

    def refresh(self, app: str) -> None:
        """Read the app's drains again: start senders for new ones, stop those of removed ones."""
        urls = drains.list_urls(self.store, app)
        with self._lock:
            current = {s.drain.url: s for s in self._senders.get(app, [])}
            for url, sender in current.items():
                if url not in urls:
                    sender.stop.set()
            kept = [s for u, s in current.items() if u in urls]
            for url in urls:
                if url not in current:
                    sender = Sender(app, drains.parse(url, self.settings), self.settings)
                    threading.Thread(target=sender.run, name=f"drain-{app}", daemon=True).start()
                    kept.append(sender)
            if kept:
                self._senders[app] = kept
            else:
                self._senders.pop(app, None)

    def status(self, app: str) -> dict[str, Sender]:
        with self._lock:
            return {s.drain.url: s for s in self._senders.get(app, [])}
