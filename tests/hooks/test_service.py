"""The deploy socket: a hook process hands its work to the appliance and relays the output."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.platform import Platform
from core.output import Output
from core.settings import Settings
from hooks import pre_receive, service
from releaser.store import Store
from routerconf import Router
from scheduler.memory import MemoryBackend

ZERO = "0" * 40


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run" / "deploy.sock"
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        settings = Settings(state_dir=tmp_path / "state")
        platform = Platform(settings, Store("http://127.0.0.1:9"), Router(settings), MemoryBackend())
        loop.run_until_complete(service.serve(path, platform))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(5)
    yield path
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def test_socket_is_private(sock: Path) -> None:
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_delegate_relays_output_and_exit_code(sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEIS_APP", "x")
    monkeypatch.setenv("DEIS_USER", "u")
    out = io.StringIO()
    code = pre_receive.delegate(str(sock), f"{ZERO} {'a' * 40} refs/heads/feature\n", out)
    assert code == 0
    assert out.getvalue() == "       feature stored (not deployed: only master or main deploys)\n"
    out = io.StringIO()
    assert pre_receive.delegate(str(sock), f"{'a' * 40} {ZERO} refs/heads/master\n", out) == 1
    assert "deleting master is not allowed" in out.getvalue()


def test_a_hook_that_goes_away_interrupts_the_deploy(sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupted = threading.Event()

    def endless(stdin: str, env: dict[str, str], out: Output, platform: Platform) -> int:
        try:
            while True:
                out.detail("building...")
                time.sleep(0.02)
        except KeyboardInterrupt:
            interrupted.set()
            raise

    monkeypatch.setattr(service, "run", endless)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(json.dumps({"stdin": "", "env": {}}).encode() + b"\n")
        assert b"building" in s.recv(4096)
    assert interrupted.wait(5)


def test_a_hook_that_stops_reading_holds_the_deploy_back(sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = [0]
    interrupted = threading.Event()

    def noisy(stdin: str, env: dict[str, str], out: Output, platform: Platform) -> int:
        try:
            while True:
                out.detail("x" * 1024)
                written[0] += 1
        except KeyboardInterrupt:
            interrupted.set()
            raise

    monkeypatch.setattr(service, "run", noisy)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(json.dumps({"stdin": "", "env": {}}).encode() + b"\n")
        time.sleep(1.0)  # reading nothing
        first = written[0]
        time.sleep(0.5)
        assert written[0] == first  # the deploy waits for the reader (socket buffers are all it fills)
        assert first < 20000  # ~20 MB at most, not all it could print in a second and a half
    assert interrupted.wait(5)
    time.sleep(0.5)  # the appliance's side winds down before the fixture stops its loop
