"""The platform's own components as containers the engine supervises (issue 10): the router first.

A SIGKILLed nginx (master and workers) is started again by dockerd (restart policy), apps serve again
within 2 s with nothing else acting; `deis status` shows state, uptime and restarts; a router an
earlier platform started as a loose process on the host is taken over by the container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import docker
import pytest

from appliance import components, services
from core import proc
from routerconf import Router
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(platform: Harness, admin: Key) -> str:
    name = unique("comp")
    r = platform.push(platform.checkout("hello", name), admin)
    assert r.returncode == 0, r.stderr
    platform.wait_steady(name)
    return name


def status(platform: Harness) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "gitserver.admin",
        "--state-dir",
        str(platform.settings.state_dir),
        "status",
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def router_container(platform: Harness):  # type: ignore[no-untyped-def]
    return docker.from_env().containers.get(components.container_name(platform.settings, "router"))


def test_the_router_is_a_supervised_container(platform: Harness, served: str) -> None:
    c = router_container(platform)
    assert c.status == "running"
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert c.labels[components.LABEL_PLATFORM] == str(platform.settings.state_dir)
    pid = Router(platform.settings).master_pid()
    assert pid is not None and proc.cmdline(pid).startswith("nginx: master process")
    r = status(platform)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("router"))
    assert "running" in line and "restarts 0" in line and " up " in line, r.stdout


def test_a_killed_router_serves_again_within_2s(platform: Harness, served: str) -> None:
    router = Router(platform.settings)
    master = router.master_pid()
    assert master is not None
    victims = {master, *proc.children(master)}
    began = time.monotonic()
    for pid in victims:  # every nginx process this test platform's router runs
        os.kill(pid, signal.SIGKILL)
    took = platform.wait_for(served, "hello", timeout=10)
    assert took < 2.0, took
    assert router.master_pid() not in (None, master)
    assert time.monotonic() - began < 2.5
    st = services.component_state(components.container_name(platform.settings, "router"))
    assert st is not None and st.state == "running" and st.restarts >= 1
    platform.wait_steady(served)
    line = next(ln for ln in status(platform).stdout.splitlines() if ln.startswith("router"))
    assert f"restarts {st.restarts}" in line


def test_up_takes_over_a_router_an_earlier_platform_started_on_the_host(
    platform: Harness, served: str
) -> None:
    """The previous layout: nginx as a loose host process with its pidfile. `up` stops it by its
    pid (gracefully) and starts the container on the same files: the same apps are routed."""
    components.stop_router(platform.settings, platform.out)
    legacy = Router(platform.settings)
    try:
        legacy.start()  # what the previous main's `deis up` did: nginx daemonized on the host
        loose = legacy.master_pid()
        assert loose is not None
        platform.wait_for(served, "hello")
        components.start_router(platform.settings, platform.out)
        assert not proc.alive(loose)
        assert router_container(platform).status == "running"
        assert legacy.master_pid() not in (None, loose)
        platform.wait_for(served, "hello", timeout=5)
        components.start_router(platform.settings, platform.out)  # idempotent: nothing replaced
        assert router_container(platform).attrs["RestartCount"] == 0
    finally:
        components.start_router(platform.settings, platform.out)
    platform.wait_steady(served)
