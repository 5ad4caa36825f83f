"""The swarm scheduler end to end: `scheduler:set` moves a platform's apps onto a single-node swarm
and back under load, and on the swarm the app scales, restarts, runs one-offs and is routed with no
failed request. A platform of its own (a switch moves every app), on the shared engine made a swarm
manager for the module (tests/swarmtest.py) and left again after it."""

from __future__ import annotations

import errno
import json
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import Harness, Key, unique
from tests.load import Load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def swarmed(swarm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("swarmed"))
    try:
        h.up()
        yield h
    finally:
        h.down()


@pytest.fixture(scope="module")
def boss(swarmed: Harness) -> Key:
    return swarmed.add_user("boss", admin=True)


@pytest.fixture(scope="module")
def app(swarmed: Harness, boss: Key) -> tuple[str, Path]:
    name = unique("sw")
    work = swarmed.checkout("hello", name)
    r = swarmed.push(work, boss)
    assert r.returncode == 0, r.stderr
    return name, work


def load(h: Harness, name: str) -> Load:
    return Load(h.settings.http_port, f"{name}.{h.settings.domain}", workers=3)


def ps(h: Harness, key: Key, name: str) -> list[dict[str, str]]:
    r = h.ssh(key, "ps", "--app", name, "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def services(h: Harness, name: str) -> list[str]:
    found = docker.from_env().api.services(
        filters={"label": [f"io.deis.platform={h.settings.state_dir}", f"io.deis.app={name}"]}
    )
    return sorted(s["Spec"]["Labels"]["io.deis.name"] for s in found)


def task_address(h: Harness, name: str) -> tuple[str, int]:
    """The web task's own address on the swarm's app network and the port it listens on."""
    client = docker.from_env()
    [container] = client.containers.list(filters={"label": f"io.deis.app={name}"})
    nets = container.attrs["NetworkSettings"]["Networks"]
    [ip] = [n["IPAddress"] for net, n in nets.items() if net.startswith("deis-swarm-apps-")]
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    return ip, int(env["PORT"])


def switch_under_load(h: Harness, key: Key, name: str, to: str) -> None:
    with load(h, name) as traffic:
        time.sleep(0.5)
        r = h.ssh(key, "scheduler:set", to)
        time.sleep(1.0)
    assert r.returncode == 0, r.stderr
    assert traffic.result.failed == 0, traffic.result.summary()
    assert traffic.result.sent > 50, traffic.result.summary()


def test_only_an_admin_switches_and_a_bad_name_changes_nothing(swarmed: Harness, boss: Key, app) -> None:
    pleb = swarmed.add_user("pleb")
    r = swarmed.ssh(pleb, "scheduler:set", "swarm")
    assert r.returncode != 0 and "only an admin" in r.stderr
    r = swarmed.ssh(boss, "scheduler:set", "kubernetes")
    assert r.returncode == 2 and "kubernetes" in r.stderr
    r = swarmed.ssh(boss, "scheduler", "--json")
    assert json.loads(r.stdout)["scheduler"] == "docker"


def test_the_app_moves_to_swarm_and_back_with_no_failed_request(swarmed: Harness, boss: Key, app) -> None:
    name, work = app
    switch_under_load(swarmed, boss, name, "swarm")
    assert services(swarmed, name) == [f"{name}_v2.cmd.1"]
    assert swarmed.containers(name) == []  # the docker backend's containers were retired
    rows = ps(swarmed, boss, name)
    assert [(r["process"], r["state"]) for r in rows] == [("cmd.1", "running")] and rows[0]["node"]
    assert swarmed.ssh(boss, "ps", "--app", name).stdout.split()[-1] == rows[0]["node"]  # a NODE column

    # On the swarm: scale, restart and a push, each under load.
    for command in (["scale", "cmd=2"], ["ps:restart", "cmd"], ["scale", "cmd=1"]):
        with load(swarmed, name) as traffic:
            time.sleep(0.3)
            r = swarmed.ssh(boss, *command, "--app", name)
            time.sleep(0.5)
        assert r.returncode == 0, r.stderr
        assert traffic.result.failed == 0, (command, traffic.result.summary())
    swarmed.commit_change(work, "message.txt", "pushed to the swarm\n")
    with load(swarmed, name) as traffic:
        r = swarmed.push(work, boss)
        time.sleep(0.5)
    assert r.returncode == 0, r.stderr
    assert traffic.result.failed == 0, traffic.result.summary()
    assert "pushed to the swarm" in traffic.result.bodies
    assert services(swarmed, name) == [f"{name}_v3.cmd.1"]

    # The log collector follows the swarm's tasks, and keeps a retired one's lines.
    path = f"/{unique('path')}"
    assert swarmed.get(name, path)[0] == 200
    seen = f"{name}[cmd.1]: GET {path}"
    deadline = time.monotonic() + 10
    while seen not in (lines := swarmed.ssh(boss, "logs", "-n", "100000", "--app", name).stdout.splitlines()):
        assert time.monotonic() < deadline, lines[-20:]
        time.sleep(0.3)

    # A one-off is a task: its output and exit status come back, values kept exactly.
    r = swarmed.ssh(boss, "config:set", "--app", name, shlex.quote("ODD=a 'b' $(c)"))
    assert r.returncode == 0, r.stderr
    r = swarmed.ssh(
        boss, "run", "--app", name, "--", "sh", "-c", "'printf %s \"$ODD\"; echo err >&2; exit 3'"
    )
    assert (r.returncode, r.stdout, r.stderr.strip()) == (3, "a 'b' $(c)", "err")
    assert services(swarmed, name) == [f"{name}_v4.cmd.1"]  # the one-off's service is gone

    # Tasks cannot reach each other on the swarm's app network (only the router reaches them).
    address = task_address(swarmed, name)
    with socket.create_connection(address, timeout=2):  # the address is right: the host reaches it
        pass
    probe = f"import socket; s = socket.socket(); s.settimeout(2); print(s.connect_ex({address!r}))"
    r = swarmed.ssh(boss, "run", "--app", name, "--", "python3", "-c", shlex.quote(probe))
    # Dropped, not refused: the packets never reach the task (EAGAIN is what a timed-out connect says).
    assert (r.returncode, r.stdout.strip()) == (0, str(errno.EAGAIN)), (r.stdout, r.stderr)

    switch_under_load(swarmed, boss, name, "docker")
    assert services(swarmed, name) == []
    assert seen in swarmed.ssh(boss, "logs", "-n", "100000", "--app", name).stdout.splitlines()
    assert [c.split(".")[0] for c in swarmed.containers(name)] == [f"{name}_v4"]
    swarmed.wait_steady(name)
