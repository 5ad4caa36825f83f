"""The deploy pipeline's paths with the in-memory backend, a real etcd and a router that records
what it is told: every failure must leave the old release serving and nothing new running.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import builders
from appliance import operations, pipeline
from appliance.platform import Platform
from builders import engine
from core.errors import Conflict, DeployError, HealthCheckFailed, RouterError, ServiceError, ValidationError
from core.output import Output
from core.records import Build, Release
from core.settings import Settings
from releaser import apps, releases
from releaser.locks import AppLock
from releaser.store import Store
from routerconf.site import Site
from scheduler.memory import MemoryBackend, Program

FAST = {"HEALTHCHECK_TIMEOUT": "0.5", "HEALTHCHECK_INTERVAL": "0.01"}


@dataclass
class RecordingRouter:
    """What the router was told, in order; `refuse` makes the next publishes fail as nginx would."""

    published: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # endpoints nginx "refuses"

    def publish(self, app: str, endpoints: list[str], site: Site | None = None) -> None:
        if self.refuse & set(endpoints):
            raise RouterError(f"nginx refused the configuration for {app}: test")
        self.published.append((app, list(endpoints)))

    def remove(self, app: str) -> None:
        self.published.append((app, []))

    def now(self, app: str) -> list[str]:
        return next((e for a, e in reversed(self.published) if a == app), [])


@pytest.fixture
def p(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setattr(builders, "collect_garbage", lambda settings, app, keep: [])  # no local images
    backend = MemoryBackend(
        {
            "never-healthy": Program(listens=False),
            "crash-loop": Program(crash_after=0.0),
            "bad-release": Program(exit_code=1, output=lambda spec: "migrating...\nno such table\n"),
        }
    )
    yield Platform(Settings(state_dir=tmp_path, stop_grace=0), store, RecordingRouter(), backend)


def out() -> Output:
    return Output(io.StringIO())


def router(p: Platform) -> RecordingRouter:
    assert isinstance(p.router, RecordingRouter)
    return p.router


def backend(p: Platform) -> MemoryBackend:
    assert isinstance(p.backend, MemoryBackend)
    return p.backend


def new_app(p: Platform) -> str:
    app = f"pl-{uuid.uuid4().hex[:6]}"
    apps.create_app(p.store, app, "alice")
    releases.initial(p.store, app, "alice")
    return app


def deploy(p: Platform, app: str, image: str = "good", release: str = "", **config: str) -> Release:
    build = Build(
        image=image, kind="dockerfile", procfile={"web": "serve", "worker": "work"}, release=release
    )
    r = releases.prepare(p.store, app, by="alice", summary="test", build=build, config={**FAST, **config})
    lock = AppLock(p.store, app, owner="alice")
    lock.acquire(0)
    with lock:
        return pipeline.roll_out(p, r, out())


def running(p: Platform, app: str) -> list[str]:
    return [f"v{i.name.version}.{i.name.type}.{i.name.num}" for i in p.backend.instances(app)]


def web_endpoint(p: Platform, app: str, version: int) -> list[str]:
    return [i.endpoint for i in p.backend.instances(app) if i.name.version == version and i.endpoint]


def test_a_deploy_switches_the_router_and_retires_the_old_release(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    assert running(p, app) == ["v2.web.1"]
    assert router(p).now(app) == web_endpoint(p, app, 2)
    deploy(p, app)
    assert running(p, app) == ["v3.web.1"]
    assert router(p).now(app) == web_endpoint(p, app, 3)
    assert releases.latest(p.store, app).version == 3  # type: ignore[union-attr]


def test_a_failed_health_check_leaves_the_old_release_serving(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    before = router(p).now(app)
    with pytest.raises(HealthCheckFailed, match="failed its health check"):
        deploy(p, app, image="never-healthy")
    assert running(p, app) == ["v2.web.1"]  # the new instance is gone
    assert router(p).now(app) == before
    assert releases.latest(p.store, app).version == 2  # type: ignore[union-attr]


def test_a_crash_loop_fails_the_deploy(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    with pytest.raises(HealthCheckFailed, match="exited before it was healthy"):
        deploy(p, app, image="crash-loop")
    assert running(p, app) == ["v2.web.1"]


def test_a_router_that_refuses_the_switch_gives_the_traffic_back(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    before = router(p).now(app)
    backend(p).programs["refused"] = Program()
    next_port = f"127.0.0.1:{int(before[0].rsplit(':', 1)[1]) + 1}"
    router(p).refuse = {next_port}
    with pytest.raises(RouterError):
        deploy(p, app, image="refused")
    router(p).refuse = set()
    assert router(p).now(app) == before
    assert running(p, app) == ["v2.web.1"]
    assert releases.latest(p.store, app).version == 2  # type: ignore[union-attr]


def test_the_switch_waits_for_the_background_push(p: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A buildpack image starts while it is pushed; the router switches (and the release is
    recorded) only once the registry has it."""
    app = new_app(p)
    deploy(p, app)
    release = threading.Event()
    order: list[str] = []

    def slow_push(tag: str, auth: dict[str, str]) -> None:
        release.wait(10)
        order.append(f"pushed {tag}")

    publish = router(p).publish

    def recorded(app: str, endpoints: list[str], site: Site | None = None) -> None:
        order.append("switched")
        publish(app, endpoints, site)

    monkeypatch.setattr(engine, "push", slow_push)
    monkeypatch.setattr(router(p), "publish", recorded)
    engine.push_beside("slow", {})
    threading.Timer(0.3, release.set).start()
    before = router(p).now(app)
    deploy(p, app, image="slow")
    assert order == ["pushed slow", "switched"] and router(p).now(app) != before
    assert engine.wait_pushed("slow") is None  # joined once, then forgotten


def test_a_failed_background_push_fails_the_deploy_before_the_switch(
    p: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = new_app(p)
    deploy(p, app)
    before = router(p).now(app)

    def refused(tag: str, auth: dict[str, str]) -> None:
        raise ServiceError(f"pushing {tag} to the registry failed: unauthorized")

    monkeypatch.setattr(engine, "push", refused)
    engine.push_beside("unpushed", {})
    with pytest.raises(ServiceError, match="unauthorized"):
        deploy(p, app, image="unpushed")
    assert router(p).now(app) == before and running(p, app) == ["v2.web.1"]
    assert releases.latest(p.store, app).version == 2  # type: ignore[union-attr]


def test_a_lost_lock_refuses_the_switch(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    before = list(router(p).published)
    build = Build(image="good", kind="dockerfile", procfile={"web": "serve"})
    r = releases.prepare(p.store, app, by="alice", summary="test", build=build, config=FAST)
    lock = AppLock(p.store, app, owner="alice")
    lock.acquire(0)
    lock.lost.set()  # etcd was out for longer than the lock's TTL
    try:
        with pytest.raises(Conflict, match="lost the lock"):
            pipeline.roll_out(p, r, out())
    finally:
        lock.release()
    assert router(p).published == before  # not even a publish of the old endpoints
    assert running(p, app) == ["v2.web.1"]


def test_a_failing_release_phase_aborts_before_anything_starts(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    stream = io.StringIO()
    build = Build(image="bad-release", kind="dockerfile", procfile={"web": "serve"}, release="migrate")
    r = releases.prepare(p.store, app, by="alice", summary="test", build=build, config=FAST)
    with pytest.raises(DeployError, match=r"release command failed \(exit status 1\)"):
        pipeline.roll_out(p, r, Output(stream))
    assert "       no such table" in stream.getvalue()  # its output streamed to the deployer
    assert running(p, app) == ["v2.web.1"]
    assert releases.latest(p.store, app).version == 2  # type: ignore[union-attr]


def test_a_rollback_is_a_new_release_with_the_old_build_and_config(p: Platform) -> None:
    app = new_app(p)
    v2 = deploy(p, app, GREETING="one")
    deploy(p, app, GREETING="two")
    target = releases.get_release(p.store, app, v2.version)
    r = releases.prepare(
        p.store, app, by="alice", summary="rolled back to v2", build=target.build, config=target.config
    )
    pipeline.roll_out(p, r, out())
    current = releases.latest(p.store, app)
    assert current is not None and current.version == 4 and current.config["GREETING"] == "one"
    assert running(p, app) == ["v4.web.1"] and router(p).now(app) == web_endpoint(p, app, 4)


def test_scale_up_then_to_zero(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    operations.scale(p, app, {"web": 3, "worker": 1}, "alice", out())
    assert running(p, app) == ["v2.web.1", "v2.web.2", "v2.web.3", "v2.worker.1"]
    assert len(router(p).now(app)) == 3
    operations.scale(p, app, {"web": 0, "worker": 0}, "alice", out())
    assert running(p, app) == [] and router(p).now(app) == []
    assert apps.get_formation(p.store, app) == {"web": 0, "worker": 0}
    deploy(p, app)  # scaled to zero on purpose stays at zero
    assert running(p, app) == []


def test_restart_of_a_routed_type_never_leaves_the_router_empty(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    operations.scale(p, app, {"web": 2}, "alice", out())
    old = {i.id for i in p.backend.instances(app)}
    mark = len(router(p).published)
    operations.restart(p, app, "web", None, "alice", out())
    new = {i.id for i in p.backend.instances(app)}
    assert len(new) == 2 and not old & new
    during = [e for a, e in router(p).published[mark:] if a == app]
    assert during and all(len(e) == 2 for e in during)  # one replaced at a time, both always routed
    assert sorted(router(p).now(app)) == sorted(web_endpoint(p, app, 2))


def test_restart_whose_replacement_never_gets_healthy_keeps_the_old_one(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    (old,) = p.backend.instances(app)
    backend(p).programs["good"] = Program(listens=False)  # from now on, starts never get healthy
    with pytest.raises(HealthCheckFailed):
        operations.restart(p, app, "web", 1, "alice", out())
    assert [i.id for i in p.backend.instances(app)] == [old.id]
    assert router(p).now(app) == [old.endpoint]


def test_scale_is_capped_per_type_and_per_app(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    p.settings.max_scale_per_type, p.settings.max_scale_per_app = 3, 4
    with pytest.raises(ValidationError, match="cannot scale web to 99999999999: at most 3 containers per"):
        operations.scale(p, app, {"web": 99999999999}, "alice", out())
    with pytest.raises(ValidationError, match=f"cannot scale {app} to 5 containers: at most 4 per app"):
        operations.scale(p, app, {"web": 3, "worker": 2}, "alice", out())
    assert running(p, app) == ["v2.web.1"] and apps.get_formation(p.store, app) == {"web": 1}
    operations.scale(p, app, {"web": 3, "worker": 1}, "alice", out())
    assert len(running(p, app)) == 4


def test_a_release_phase_that_never_ends_is_stopped_at_its_time_limit(p: Platform) -> None:
    app = new_app(p)
    deploy(p, app)
    backend(p).programs["hung-release"] = Program(hangs=True)
    p.settings.release_timeout = 0.5
    build = Build(
        image="hung-release", kind="dockerfile", procfile={"web": "serve"}, release="sleep infinity"
    )
    r = releases.prepare(p.store, app, by="alice", summary="test", build=build, config=FAST)
    with pytest.raises(DeployError, match=r"release command ran longer than 0.5s and was stopped"):
        pipeline.roll_out(p, r, out())
    assert running(p, app) == ["v2.web.1"]
    assert releases.latest(p.store, app).version == 2  # type: ignore[union-attr]
