"""Forwarding apps' log lines to their drains (releaser.drains), in the appliance.

The log store's writer hands each app's new lines over (`LogStore.listeners`) without waiting: each
drain has its own bounded queue (QUEUE lines) and its own sender thread, which connects, sends RFC
5424 messages with RFC 6587 octet counting, and after a failure reconnects with a growing pause
(up to BACKOFF). A line that finds the queue full is dropped and counted: a drain that is down never
blocks the app, its logs or the other drains, and `drains` shows what it delivered, holds and dropped.

The drains of an app are read from etcd once at start and again whenever a command changes them
(`refresh`): nothing is polled.

    <14>1 2026-12-02T10:00:00.123456Z deis myapp web.1 - - GET /
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


def rfc5424(app: str, line: Line) -> bytes:
    """One syslog message (RFC 5424), octet-counted (RFC 6587 3.4.1)."""
    stamp = datetime.fromtimestamp(line.time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    procid = "".join(c for c in line.source if 33 <= ord(c) <= 126)[:128] or "-"
    msg = f"<{PRI}>1 {stamp} {HOSTNAME} {app[:48]} {procid} - - {line.text}".encode()
    return f"{len(msg)} ".encode() + msg


@dataclass
class Sender:
    app: str
    drain: drains.Drain
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
        sock: socket.socket | None = None
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
                if sock is None:
                    sock = socket.create_connection((self.drain.host, self.drain.port), timeout=TIMEOUT)
                sock.sendall(b"".join(rfc5424(self.app, ln) for ln in batch))
                self.delivered += len(batch)
                self.error, pause = "", 0.5
            except OSError as exc:
                self.error = str(exc) or type(exc).__name__
                if sock is not None:
                    sock.close()
                    sock = None
                self._put_back(batch)
                self.stop.wait(pause)
                pause = min(BACKOFF, pause * 2)
        if sock is not None:
            sock.close()

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
                    sender = Sender(app, drains.parse(url, self.settings))
                    threading.Thread(target=sender.run, name=f"drain-{app}", daemon=True).start()
                    kept.append(sender)
            if kept:
                self._senders[app] = kept
            else:
                self._senders.pop(app, None)

    def status(self, app: str) -> dict[str, Sender]:
        with self._lock:
            return {s.drain.url: s for s in self._senders.get(app, [])}
