"""`deis up` / `deis down` on a host where dockerd does not answer yet (a fresh boot, as in CI)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from appliance import components, handover, processes, services
from core.output import Output
from core.settings import Settings
from gitserver import admin


class Stop(Exception):
    pass


def up_args() -> argparse.Namespace:
    return admin.parser().parse_args(["up"])


def test_up_starts_dockerd_before_asking_the_engine_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def ensure_dockerd(settings: Settings, out: Output, timeout: float = 30.0) -> None:
        calls.append("ensure_dockerd")

    def appliance_running(settings: Settings) -> bool:
        calls.append("appliance_running")
        raise Stop

    monkeypatch.setattr(services, "ensure_dockerd", ensure_dockerd)
    monkeypatch.setattr(handover, "appliance_running", appliance_running)
    with pytest.raises(Stop):
        admin.cmd_up(Settings(state_dir=tmp_path / "state"), up_args(), Output(io.StringIO()))
    assert calls == ["ensure_dockerd", "appliance_running"]


def test_down_without_an_engine_stops_only_loose_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("asked an engine that does not answer")

    stopped: list[str] = []
    monkeypatch.setattr(services, "docker_answers", lambda timeout=2.0: False)
    monkeypatch.setattr(services, "_client", no_engine)
    monkeypatch.setattr(handover, "stop_appliance", no_engine)

    def stop(svc: processes.Service, settings: Settings, out: Output, grace: float | None = None) -> bool:
        stopped.append(svc.name)
        return False

    monkeypatch.setattr(processes, "stop", stop)
    monkeypatch.setattr(services, "stop", stop)
    monkeypatch.setattr(components.Router, "stop", lambda self: None)
    stream = io.StringIO()
    assert admin.cmd_down(Settings(state_dir=tmp_path / "state"), argparse.Namespace(), Output(stream)) == 0
    assert stopped == ["appliance", "registry", "etcd", "dockerd"]
    assert "The platform is down" in stream.getvalue()
