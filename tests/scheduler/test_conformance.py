"""The one conformance test every scheduler backend passes: docker against the real engine, and the
in-memory backend the pipeline's unit tests use, and swarm on a single-node swarm of the same engine
(made for the run when the engine is in none). A fleet backend joins BACKENDS and must pass it as it stands.

Each backend says how to make a process that serves, one that idles, one that crashes and a
one-off that prints a value and exits 7 (`Programs`); the tests are the same for all.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from core.names import ContainerName
from scheduler.base import EVENT_ACTIONS, Backend, Event, ProcessSpec, Stdio
from scheduler.docker import LABEL_PLATFORM, DockerBackend
from scheduler.memory import MemoryBackend, Program
from scheduler.swarm import SwarmBackend
from tests.harness import own

STACK = "deis/stack:bookworm"
SERVE = (
    "import http.server as h, os; print('up', flush=True); "
    "h.HTTPServer(('', int(os.environ['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()"
)


@dataclass(frozen=True)
class Programs:
    """(image, command) pairs that behave the same on every backend."""

    server: tuple[str, list[str] | None]  # prints "up", then accepts connections on $PORT
    idle: tuple[str, list[str] | None]  # runs, listens on nothing
    crasher: tuple[str, list[str] | None]  # exits 3 at once
    printer: tuple[str, list[str] | None]  # one-off: writes $K exactly, exits 7
    sleeper: tuple[str, list[str] | None]  # one-off: runs until stopped


def docker_backend() -> tuple[Backend, Programs]:
    programs = Programs(
        server=(STACK, ["python3", "-u", "-c", SERVE]),
        idle=(STACK, ["sleep", "60"]),
        crasher=(STACK, ["sh", "-c", "exit 3"]),
        printer=(STACK, ["sh", "-c", 'printf %s "$K"; exit 7']),
        sleeper=(STACK, ["sleep", "60"]),
    )
    return DockerBackend(own(f"conformance-{uuid.uuid4().hex[:8]}")), programs


def swarm_backend() -> tuple[Backend, Programs]:
    _, programs = docker_backend()
    return SwarmBackend(own(f"conformance-{uuid.uuid4().hex[:8]}")), programs


def memory_backend() -> tuple[Backend, Programs]:
    backend = MemoryBackend(
        {
            "server": Program(output=lambda spec: "up\n"),
            "idle": Program(listens=False),
            "crasher": Program(listens=False, crash_after=0.0),
            "printer": Program(output=lambda spec: spec.env["K"], exit_code=7),
            "sleeper": Program(hangs=True),
        }
    )
    return backend, Programs(*((name, None) for name in ("server", "idle", "crasher", "printer", "sleeper")))


BACKENDS: dict[str, Callable[[], tuple[Backend, Programs]]] = {
    "docker": docker_backend,
    "memory": memory_backend,
    "swarm": swarm_backend,
}


@pytest.fixture(scope="module")
def swarm_platform(swarm: None) -> Iterator[tuple[Backend, Programs]]:
    """One swarm platform for the module's tests: its app network is made once (and removing a
    swarm network waits for every node to let go of it, about 2 s)."""
    backend, programs = swarm_backend()
    yield backend, programs
    forget_network(backend)


@pytest.fixture(params=sorted(BACKENDS))
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Backend, Programs]]:
    shared = request.param == "swarm"
    backend, programs = request.getfixturevalue("swarm_platform") if shared else BACKENDS[request.param]()
    backend.removing = None
    yield backend, programs
    for inst in backend.instances():
        backend.stop(inst.id, 0)
    if not shared:
        forget_network(backend)


def forget_network(backend: Backend) -> None:
    """The app network a docker backend made on its first start."""
    if isinstance(backend, SwarmBackend):
        backend.forget_networks()
    if isinstance(backend, DockerBackend):
        for net in backend.client.networks.list(filters={"label": f"{LABEL_PLATFORM}={backend.platform}"}):
            net.remove()


def spec(app: str, program: tuple[str, list[str] | None], num: int = 1, **kw: object) -> ProcessSpec:
    image, command = program
    values: dict[str, object] = {
        "name": ContainerName(app, 2, "web", num),
        "image": image,
        "command": command,
        "env": {"PORT": "5000", "K": "a 'b' $(c)"},
        "port": 5000,
        **kw,
    }
    return ProcessSpec(**values)  # type: ignore[arg-type]


def wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def app_name() -> str:
    return f"conf-{uuid.uuid4().hex[:6]}"


def test_start_list_probe_log_stop(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    app = app_name()
    inst = backend.start(spec(app, programs.server))
    assert str(inst.name) == f"{app}_v2.web.1" and inst.port == 5000
    assert inst.endpoint is not None and inst.endpoint.startswith("127.0.0.1:")
    assert inst.started > time.time() - 60
    wait(lambda: backend.probe(backend.inspect(inst.id)))  # type: ignore[arg-type]
    current = backend.inspect(inst.id)
    assert current is not None and current.running and current.id == inst.id
    assert [str(i.name) for i in backend.instances(app)] == [f"{app}_v2.web.1"]
    wait(lambda: "up" in backend.log_tail(inst.id))
    backend.stop(inst.id, 2)
    assert backend.inspect(inst.id) is None
    assert backend.instances(app) == []
    backend.stop(inst.id, 0)  # stopping what is gone is not an error
    backend.stop(str(inst.name), 0)


def test_removing_hears_of_a_stopped_instance_whose_output_is_still_there(
    setup: tuple[Backend, Programs],
) -> None:
    backend, programs = setup
    heard: list[tuple[str, str, str]] = []

    def removing(cid: str) -> None:
        inst = backend.inspect(cid)
        heard.append((cid, inst.state if inst else "gone", backend.log_tail(cid)))

    backend.removing = removing
    inst = backend.start(spec(app_name(), programs.server))
    wait(lambda: "up" in backend.log_tail(inst.id))
    backend.stop(str(inst.name), 1)
    assert heard == [(inst.id, "exited", "up\n")]
    assert backend.inspect(inst.id) is None


def test_not_listening_is_told_apart_from_listening(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    inst = backend.start(spec(app_name(), programs.idle))
    time.sleep(0.5)
    current = backend.inspect(inst.id)
    assert current is not None and current.running and not backend.probe(current)


def test_a_crashed_instance_is_seen_exited_or_restarted(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    inst = backend.start(spec(app_name(), programs.crasher, port=None))

    def crashed() -> bool:
        cur = backend.inspect(inst.id)
        return cur is not None and (cur.state in ("exited", "dead") or cur.restarts > 0)

    wait(crashed)


def test_a_second_start_of_a_name_runs_beside_the_first(setup: tuple[Backend, Programs]) -> None:
    """How a restart replaces an instance without a gap: both are listed until the old one stops."""
    backend, programs = setup
    app = app_name()
    old = backend.start(spec(app, programs.server))
    new = backend.start(spec(app, programs.server))
    assert old.id != new.id and old.endpoint != new.endpoint
    both = backend.instances(app)
    assert [i.id for i in both] == [old.id, new.id]  # by name, then by start time
    assert all(i.running for i in both) and {str(i.name) for i in both} == {f"{app}_v2.web.1"}
    backend.stop(old.id, 0)
    assert [i.id for i in backend.instances(app)] == [new.id]
    backend.start(spec(app, programs.server))
    backend.stop(f"{app}_v2.web.1", 0)  # a name stops every instance of it
    assert backend.instances(app) == []


def test_one_off_runs_attached_and_keeps_values_exactly(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    image, command = programs.printer
    value = "a 'b' $(c) `d`\nline2"
    one = ProcessSpec(ContainerName(app_name(), 2, "run", 1), image, command, {"K": value})
    r, w = os.pipe()
    try:
        code = backend.run_attached(one, Stdio(stdin=None, stdout=w, stderr=w))
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        written = f.read().decode()
    assert (code, written) == (7, value)
    assert backend.inspect(str(one.name)) is None  # removed when it exited


def test_a_one_off_stopped_by_name_returns(setup: tuple[Backend, Programs]) -> None:
    """A hang-up stops a one-off by name from another thread; run_attached then returns."""
    backend, programs = setup
    image, command = programs.sleeper
    one = ProcessSpec(ContainerName(app_name(), 2, "run", 1), image, command, {})
    devnull = os.open(os.devnull, os.O_WRONLY)
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(backend.run_attached(one, Stdio(None, devnull, devnull)))
    )
    worker.start()
    try:
        wait(lambda: backend.inspect(str(one.name)) is not None)
        backend.stop(str(one.name), 0)
        worker.join(30)
        assert not worker.is_alive() and result and result[0] != 0
    finally:
        os.close(devnull)
    assert backend.inspect(str(one.name)) is None


class Follower:
    """Reads a backend's event stream in a thread, as the reconciler does."""

    def __init__(self, backend: Backend) -> None:
        self.stream = backend.events()
        self.seen: list[Event] = []
        self.thread = threading.Thread(target=lambda: self.seen.extend(self.stream), daemon=True)
        self.thread.start()

    def saw(self, app: str, ident: str, action: str) -> bool:
        return any((e.app, e.id, e.action) == (app, ident, action) for e in list(self.seen))

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "close() did not end the iteration"


def test_events_tell_of_starts_exits_and_removals(setup: tuple[Backend, Programs]) -> None:
    """What the reconciler follows instead of polling: every event after events() returned."""
    backend, programs = setup
    app = app_name()
    follower = Follower(backend)
    try:
        began = time.time()
        inst = backend.start(spec(app, programs.server))
        wait(lambda: follower.saw(app, inst.id, "start"), timeout=10)
        backend.stop(inst.id, 0)
        wait(lambda: follower.saw(app, inst.id, "die") and follower.saw(app, inst.id, "destroy"), timeout=10)
        crasher = backend.start(spec(app, programs.crasher, num=2, port=None))
        backend.inspect(crasher.id)  # the memory backend's crashes happen when looked at
        wait(lambda: follower.saw(app, crasher.id, "die"), timeout=10)
    finally:
        follower.close()
    ours = [e for e in follower.seen if e.app == app]
    assert all(e.action in EVENT_ACTIONS and e.time >= began - 1 for e in ours)
    assert {e.id for e in ours} == {inst.id, crasher.id}


def test_an_event_stream_sees_only_its_platform(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    other, _ = BACKENDS[backend.name]()
    follower = Follower(backend)
    try:
        stranger = other.start(spec(app_name(), programs.idle, port=None))
        mine = backend.start(spec(app_name(), programs.idle, port=None))
        wait(lambda: follower.saw(mine.name.app, mine.id, "start"), timeout=10)
        other.stop(stranger.id, 0)
        backend.stop(mine.id, 0)
        wait(lambda: follower.saw(mine.name.app, mine.id, "destroy"), timeout=10)
    finally:
        follower.close()
        for inst in other.instances():
            other.stop(inst.id, 0)
        forget_network(other)
    assert all(e.app != stranger.name.app for e in follower.seen)


def test_usage_of_running_instances(setup: tuple[Backend, Programs]) -> None:
    backend, programs = setup
    app = app_name()
    inst = backend.start(spec(app, programs.server, memory=256 * 2**20))
    wait(lambda: backend.probe(backend.inspect(inst.id)))  # type: ignore[arg-type]
    current = backend.inspect(inst.id)
    assert current is not None
    used = backend.usage([current])
    assert used.keys() == {inst.id}
    assert used[inst.id].cpu >= 0 and used[inst.id].memory >= 0
    assert used[inst.id].memory_limit == 256 * 2**20
    backend.stop(inst.id, 0)
    assert backend.usage([current]) == {}  # a gone one is left out
    assert backend.usage([]) == {}
