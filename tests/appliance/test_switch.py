"""scheduler:set's move between backends (appliance.switch), with in-memory backends, a real etcd and
the recording router: every app ends on the new backend and routed there, or, when one cannot start,
nothing changed at all."""

from __future__ import annotations

import itertools

import pytest

from appliance import switch
from appliance.platform import Platform
from core.errors import HealthCheckFailed, ValidationError
from releaser import platform as platform_config
from scheduler.base import Backend
from scheduler.memory import MemoryBackend, Program
from tests.appliance.test_pipeline import deploy, new_app, out, p, router, running

__all__ = ["p"]


def other_backend(p: Platform, monkeypatch: pytest.MonkeyPatch, **programs: Program) -> MemoryBackend:
    """The backend `scheduler:set swarm` makes: in memory, with ports of its own."""
    new = MemoryBackend(programs)
    new._ports = itertools.count(50000)  # type: ignore[attr-defined]
    monkeypatch.setattr(p, "make_backend", lambda name: new)
    return new


def test_every_app_moves_and_is_routed_there(p: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    platform_config.set_scheduler(p.store, "docker")
    old = p.backend
    first, second = new_app(p), new_app(p)
    deploy(p, first)
    deploy(p, second)
    new = other_backend(p, monkeypatch)
    told: list[Backend] = []
    p.backend_changed.append(lambda: told.append(p.backend))

    assert switch.switch(p, "swarm", "alice", out())

    assert p.backend is new and told == [new]
    assert platform_config.scheduler(p.store) == "swarm"
    for app in (first, second):
        assert old.instances(app) == []
        assert running(p, app) == ["v2.web.1"]
        assert router(p).now(app) == [i.endpoint for i in new.instances(app)]
    assert not switch.switch(p, "swarm", "alice", out())  # already there: nothing to do


def test_an_app_that_cannot_start_there_changes_nothing(p: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    platform_config.set_scheduler(p.store, "docker")
    old = p.backend
    first, second = new_app(p), new_app(p)
    deploy(p, first)
    deploy(p, second, image="picky")
    assert isinstance(old, MemoryBackend)
    before = {app: router(p).now(app) for app in (first, second)}
    new = other_backend(p, monkeypatch, picky=Program(listens=False))

    with pytest.raises(HealthCheckFailed):
        switch.switch(p, "swarm", "alice", out())

    assert p.backend is old and platform_config.scheduler(p.store) == "docker"
    assert new.instances() == []  # what had started there was stopped again
    for app in (first, second):
        assert running(p, app) == ["v2.web.1"]
        assert router(p).now(app) == before[app]


def test_an_unknown_scheduler_is_refused(p: Platform) -> None:
    with pytest.raises(ValidationError, match="unknown scheduler 'k8s'"):
        switch.switch(p, "k8s", "alice", out())
