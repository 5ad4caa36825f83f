"""`deis up` / `deis down` on a host where dockerd does not answer yet (a fresh boot, as in CI)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from appliance import components, handover, processes, services
from core.errors import ValidationError
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


def test_up_takes_an_etcd_cluster_and_refuses_bad_input_changing_nothing() -> None:
    s = Settings()
    args = admin.parser().parse_args(
        ["up", "--etcd-name", "m1", "--etcd-cluster", "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380",
         "--etcd-endpoints", "https://10.0.0.1:2379, https://10.0.0.2:2379"]
    )  # fmt: skip
    admin.apply_etcd_options(s, args)
    assert (s.etcd_name, s.etcd_cluster) == ("m1", "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380")
    assert s.etcd_endpoints == "https://10.0.0.1:2379,https://10.0.0.2:2379"
    for bad, says in (
        (["--etcd-cluster", "m2=http://10.0.0.2:2380"], "must name this member"),
        (["--etcd-cluster", "m1=10.0.0.1"], "--etcd-peers items look like"),
        (["--etcd-endpoints", "http://10.0.0.1:2379"], "look like https://"),
        (["--etcd-name", "M 1"], "--etcd-name is"),
    ):
        fresh = Settings()
        with pytest.raises(ValidationError, match=says):
            admin.apply_etcd_options(fresh, admin.parser().parse_args(["up", *bad]))
        assert fresh == Settings()
