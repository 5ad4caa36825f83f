"""Bounded HTTP load through the router (127.0.0.1 only), for zero-downtime tests and benchmarks."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    sent: int = 0
    failed: int = 0
    # Requests re-sent on a fresh connection because an idle keep-alive connection was closed by the
    # server (an nginx reload closes idle ones) before any response: what browsers and urllib3 do for
    # idempotent requests (RFC 9112 9.3.1). Counted apart, so the figure stays honest.
    retried: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bodies: set[str] = field(default_factory=set)
    duration: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        p50 = statistics.median(self.latencies) if self.latencies else 0.0
        return (
            f"sent {self.sent} failed {self.failed} (retried on a closed keep-alive {self.retried}) "
            f"p50 {p50 * 1000:.1f} ms p99 {self.pct(0.99) * 1000:.1f} ms in {self.duration:.1f} s"
            + (f"; first errors: {self.errors[:3]}" if self.errors else "")
        )


class Load:
    """`workers` threads, each on its own keep-alive connection, GET / until stopped or `limit` seconds."""

    def __init__(
        self, port: int, host: str, workers: int = 4, limit: float = 120.0, max_requests: int = 200_000
    ):
        self.port = port
        self.host = host
        self.workers = workers
        self.limit = limit
        self.max_requests = max_requests
        self.result = Result()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._start = 0.0

    def __enter__(self) -> Load:
        self._start = time.monotonic()
        for _ in range(self.workers):
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Result:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self.result.duration = time.monotonic() - self._start
        return self.result

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        deadline = self._start + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.result.sent >= self.max_requests:
                    return
                self.result.sent += 1
            began = time.monotonic()
            for attempt in (1, 2):
                reused = conn is not None
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.request("GET", "/", headers={"Host": self.host})
                    resp = conn.getresponse()
                    body = resp.read().decode("utf-8", "replace")
                    ok = 200 <= resp.status < 300
                    error = None if ok else f"HTTP {resp.status}: {body[:80]!r}"
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as exc:
                    ok, error, body = False, f"{type(exc).__name__}: {exc}", ""
                    if conn is not None:
                        conn.close()
                    conn = None
                    closed_idle = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError))
                    if not (reused and closed_idle and attempt == 1):
                        break
                    with self._lock:
                        self.result.retried += 1
            with self._lock:
                self.result.latencies.append(time.monotonic() - began)
                if ok:
                    self.result.bodies.add(body.strip())
                else:
                    self.result.failed += 1
                    if len(self.result.errors) < 20:
                        self.result.errors.append(error or "")
        if conn is not None:
            conn.close()
