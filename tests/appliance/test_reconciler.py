from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import builders
from appliance.platform import Platform
from appliance.reconciler import POLL, Plan, Reconciler, diff
from core.names import ContainerName
from core.settings import Settings
from releaser.locks import AppLock
from releaser.store import Store
from scheduler.base import Instance, ProcessSpec
from scheduler.memory import MemoryBackend, Program
from tests.appliance.test_pipeline import RecordingRouter, deploy, new_app, router


def spec(name: str) -> ProcessSpec:
    n = ContainerName.parse(name)
    assert n is not None
    return ProcessSpec(name=n, image="i", command=None, env={})


def inst(name: str, state: str = "running", id: str = "", started: float = 1.0) -> Instance:
    n = ContainerName.parse(name)
    assert n is not None
    return Instance(n, id or f"id-{name}", state, None, None, started=started)


def test_nothing_to_do() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1")])


def test_missing_exited_and_stale() -> None:
    plan = diff(
        [spec("a_v3.web.1"), spec("a_v3.web.2"), spec("a_v3.worker.1")],
        [inst("a_v2.web.1"), inst("a_v3.web.1", "exited"), inst("a_v3.worker.1"), inst("a_v3.web.3")],
    )
    assert [str(i.name) for i in plan.remove] == ["a_v2.web.1", "a_v3.web.1", "a_v3.web.3"]
    assert [str(s.name) for s in plan.start] == ["a_v3.web.1", "a_v3.web.2"]


def test_restarting_containers_are_left_to_the_engine() -> None:
    assert diff([spec("a_v2.web.1")], [inst("a_v2.web.1", "restarting")]) == Plan()


def test_one_off_containers_are_left_alone() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1"), inst("a_v1.run.1"), inst("a_v2.release.1")])


def test_of_two_instances_of_a_name_the_newer_running_one_stays() -> None:
    """A restart that died half-way leaves the old instance beside its replacement."""
    old, new = inst("a_v2.web.1", id="old", started=1.0), inst("a_v2.web.1", id="new", started=2.0)
    plan = diff([spec("a_v2.web.1")], [new, old])
    assert [i.id for i in plan.remove] == ["old"] and plan.start == []
    down = inst("a_v2.web.1", "exited", id="down", started=3.0)
    assert [i.id for i in diff([spec("a_v2.web.1")], [old, down]).remove] == ["down"]


# -- the loop, on the in-memory backend (its events are the engine's) ----------------------------


class Counting(MemoryBackend):
    """Counts listings: an idle reconciler that follows events lists nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def instances(self, app: str | None = None) -> list[Instance]:
        self.listings += 1
        return super().instances(app)


@pytest.fixture
def looping(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setattr(builders, "collect_garbage", lambda settings, app, keep: [])
    p = Platform(Settings(state_dir=tmp_path, stop_grace=0), store, RecordingRouter(), Counting())
    stop = threading.Event()
    loop = threading.Thread(target=Reconciler(p, full=600).run, args=(stop,), daemon=True)
    loop.start()
    yield p
    stop.set()
    loop.join(10)
    assert not loop.is_alive()


def until(predicate: Callable[[], bool], timeout: float) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"not within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - began


def test_the_loop_follows_events_not_a_clock(looping: Platform) -> None:
    p, mem = looping, looping.backend
    assert isinstance(mem, Counting)
    app = new_app(p)
    deploy(p, app)
    (web,) = p.backend.instances(app)
    assert router(p).now(app) == [web.endpoint]

    # Crashed and restarted in place, not answering yet: out of the router at once ...
    mem.programs["good"] = Program(listens=False)
    mem.kill(web.id)
    assert until(lambda: router(p).now(app) == [], 1.0) < 1.0
    # ... and back as soon as it answers again (probed every POLL while it does not).
    mem.programs["good"] = Program()
    until(lambda: router(p).now(app) == [web.endpoint], 1.0)

    # Removed behind the platform's back: started again.
    mem.stop(web.id, 0)
    until(lambda: [i.id for i in p.backend.instances(app) if i.running] not in ([], [web.id]), 2.0)
    until(lambda: router(p).now(app) == [i.endpoint for i in p.backend.instances(app)], 2.0)

    # Settled: nothing is listed while nothing happens.
    time.sleep(POLL * 3)
    before = mem.listings
    time.sleep(1.0)
    assert mem.listings == before


def test_an_app_whose_lock_is_held_is_looked_at_again_once_it_is_free(looping: Platform) -> None:
    p, mem = looping, looping.backend
    assert isinstance(mem, MemoryBackend)
    app = new_app(p)
    deploy(p, app)
    lock = AppLock(p.store, app, owner="someone")
    lock.acquire(0)
    with lock:
        mem.stop(str(mem.instances(app)[0].name), 0)
        time.sleep(0.5)
        assert mem.instances(app) == []  # the holder's business
    until(lambda: [i.running for i in mem.instances(app)] == [True], 3.0)
