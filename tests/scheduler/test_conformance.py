"""The one conformance test every scheduler backend passes, against the real engine.

Only the docker backend exists today; a swarm or fleet backend joins BACKENDS and must pass as is.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from appliance.names import ContainerName
from scheduler.base import Backend, ContainerSpec
from scheduler.docker import DockerBackend

IMAGE = "deis/stack:bookworm"
SERVE = (
    "import http.server as h, os; print('up', flush=True); "
    "h.HTTPServer(('', int(os.environ['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()"
)
SERVER = ["python3", "-u", "-c", SERVE]

BACKENDS: dict[str, Callable[[str], Backend]] = {"docker": lambda platform: DockerBackend(platform)}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    platform = f"conformance-{uuid.uuid4().hex[:8]}"
    b = BACKENDS[request.param](platform)
    yield b
    for inst in b.instances():
        b.stop(str(inst.name), 0)
    for _, name in b.strays():
        b.stop(name, 0)


def spec(app: str, num: int, command: list[str] | None = SERVER, port: int | None = 5000) -> ContainerSpec:
    env = {"PORT": "5000", "K": "a 'b' $(c)"}
    return ContainerSpec(
        name=ContainerName(app, 2, "web", num), image=IMAGE, command=command, env=env, port=port
    )


def wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_start_list_inspect_listen_log_stop(backend: Backend) -> None:
    app = f"conf-{uuid.uuid4().hex[:6]}"
    inst = backend.start(spec(app, 1))
    assert str(inst.name) == f"{app}_v2.web.1" and inst.port == 5000
    assert inst.endpoint is not None and inst.endpoint.startswith("127.0.0.1:")
    wait(lambda: backend.listening(backend.inspect(str(inst.name))))  # type: ignore[arg-type]
    current = backend.inspect(str(inst.name))
    assert current is not None and current.running
    assert [str(i.name) for i in backend.instances(app)] == [f"{app}_v2.web.1"]
    wait(lambda: "up" in backend.logs(str(inst.name)))
    backend.stop(str(inst.name), 2)
    assert backend.inspect(str(inst.name)) is None
    assert backend.instances(app) == []
    backend.stop(str(inst.name), 0)  # stopping what is gone is not an error


def test_not_listening_is_told_apart_from_listening(backend: Backend) -> None:
    app = f"conf-{uuid.uuid4().hex[:6]}"
    inst = backend.start(spec(app, 1, command=["sleep", "60"]))
    time.sleep(0.5)
    current = backend.inspect(str(inst.name))
    assert current is not None and current.running and not backend.listening(current)


def test_a_crashed_container_is_seen_exited_or_restarted(backend: Backend) -> None:
    app = f"conf-{uuid.uuid4().hex[:6]}"
    inst = backend.start(spec(app, 1, command=["sh", "-c", "exit 3"], port=None))

    def crashed() -> bool:
        cur = backend.inspect(str(inst.name))
        return cur is not None and (cur.state in ("exited", "dead") or cur.restarts > 0)

    wait(crashed)


def test_one_off_runs_attached_and_keeps_values_exactly(backend: Backend) -> None:
    app = f"conf-{uuid.uuid4().hex[:6]}"
    one = ContainerSpec(
        name=ContainerName(app, 2, "run", 1), image=IMAGE, command=["sh", "-c", 'printf %s "$K"; exit 7'],
        env={"K": "a 'b' $(c) `d`\nline2"},
    )  # fmt: skip
    r = subprocess.run(backend.run_argv(one), capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (7, "a 'b' $(c) `d`\nline2")
    assert backend.inspect(str(one.name)) is None  # removed when it exited


def test_strays_are_listed_by_app(backend: Backend, request: pytest.FixtureRequest) -> None:
    if not isinstance(backend, DockerBackend):
        pytest.skip("renaming is how the docker backend's restart moves a container aside")
    app = f"conf-{uuid.uuid4().hex[:6]}"
    inst = backend.start(spec(app, 1, command=["sleep", "60"], port=None))
    backend.client.containers.get(str(inst.name)).rename(f"{inst.name}.retiring")
    assert backend.strays(app) == [(app, f"{inst.name}.retiring")]
    assert backend.instances(app) == []
