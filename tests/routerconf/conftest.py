"""Fixtures for the router tests: a real nginx on a free port under a temp state dir, and tiny HTTP
backends on 127.0.0.1. Every process started here is stopped at teardown.

Helpers are handed out as fixtures (`http_get`, `port_factory`) rather than imported, so the tests do
not depend on pytest's import mode or on this directory being on sys.path."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import proc
from core.settings import Settings
from routerconf import Router
from tests.pki import TestCA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def get(port: int, host: str, path: str = "/") -> Response:
    """One request on a fresh connection to the router at 127.0.0.1:port, with the given Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read().decode()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


# -- backends --------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, body: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = body
        self.seen: list[dict[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._echo_upgraded()
            return
        if self.path.startswith("/sleep/"):  # /sleep/SECONDS: a slow request
            time.sleep(float(self.path.rsplit("/", 1)[1]))
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        data = self.server.body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        data = f"got {len(self.rfile.read(length))} bytes\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _echo_upgraded(self) -> None:
        """Accept a websocket-style upgrade (101), then echo raw bytes until the client closes."""
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while data := self.connection.recv(4096):
            self.connection.sendall(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Backend:
    server: _Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[dict[str, str]]:
        return self.server.seen


@pytest.fixture
def backend_factory() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def make(body: str) -> Backend:
        server = _Server(body)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        b = Backend(server, thread)
        started.append(b)
        return b

    yield make
    for b in started:
        b.server.shutdown()
        b.server.server_close()
        b.thread.join(5)


@pytest.fixture
def backend(backend_factory: Callable[[str], Backend]) -> Backend:
    return backend_factory("hello from backend\n")


# -- the router --------------------------------------------------------------------------------------
@pytest.fixture
def http_get() -> Callable[..., Response]:
    return get


@pytest.fixture
def port_factory() -> Callable[[], int]:
    return free_port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", http_port=free_port(), https_port=free_port())


@dataclass
class RouterTracker:
    """Every Router a test makes; at teardown each one's nginx is stopped (killed if it will not stop)."""

    routers: list[Router] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def make(self, settings: Settings) -> Router:
        r = Router(settings)
        self.routers.append(r)
        return r

    def note(self, r: Router) -> None:
        pid = r._pid()
        if pid is not None:
            self.pids.add(pid)

    def cleanup(self) -> None:
        for r in self.routers:
            self.note(r)
            with contextlib.suppress(Exception):  # the kill below is the fallback
                r.stop()
        for pid in self.pids:
            if proc.alive(pid) and "nginx: master process" in proc.cmdline(pid):
                workers = proc.children(pid)
                for p in (pid, *workers):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)


@pytest.fixture
def tracker() -> Iterator[RouterTracker]:
    t = RouterTracker()
    try:
        yield t
    finally:
        t.cleanup()


@pytest.fixture
def router(settings: Settings, tracker: RouterTracker) -> Router:
    r = tracker.make(settings)
    r.start()
    tracker.note(r)
    return r


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.make(tmp_path_factory.mktemp("ca"))
