"""The platform's own components as containers the engine supervises (issue 10).

A SIGKILLed nginx (master and workers) is started again by dockerd (restart policy), apps serve again
within 2 s with nothing else acting; a SIGKILLed etcd or registry answers again within 5 s, apps serve
throughout (0 failed requests) and commands and pushes work again with no one acting; `deis status`
shows state, uptime and restarts; a router, etcd and registry an earlier platform started as loose
processes on the host are taken over by the containers, on the same data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import docker
import pytest

from appliance import components, processes, services
from core import proc
from routerconf import Router
from tests.e2e.traces import registry_get
from tests.harness import Harness, Key, unique
from tests.load import Load

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


def container(platform: Harness, component: str):  # type: ignore[no-untyped-def]
    return docker.from_env().containers.get(components.container_name(platform.settings, component))


def router_container(platform: Harness):  # type: ignore[no-untyped-def]
    return container(platform, "router")


def legacy(platform: Harness, component: str) -> processes.Service:
    return {s.name: s for s in services.services(platform.settings)}[component]


def main_pid(platform: Harness, component: str) -> int:
    """The component's own program (etcd, docker-registry): the child of the container's init."""
    init = int(container(platform, component).attrs["State"]["Pid"])
    (pid,) = proc.children(init)
    return pid


def load(platform: Harness, app: str) -> Load:
    return Load(platform.settings.http_port, f"{app}.{platform.settings.domain}", workers=3)


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
    workers = proc.children(master)
    began = time.monotonic()
    # Every nginx process this test platform's router runs, the master first: a master that outlives
    # a worker respawns it, and that orphan would keep the port from the restarted container.
    for pid in (master, *workers):
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


@pytest.mark.parametrize("component", ["etcd", "registry"])
def test_etcd_and_registry_are_supervised_containers(platform: Harness, served: str, component: str) -> None:
    c = container(platform, component)
    assert c.status == "running"
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert c.attrs["HostConfig"]["NetworkMode"] == "host"
    assert c.labels[components.LABEL_COMPONENT] == component
    assert not (platform.settings.run_dir / f"{component}.pid").exists()  # no loose process
    line = next(ln for ln in status(platform).stdout.splitlines() if ln.startswith(component))
    assert "running" in line and " up " in line, line


def test_a_killed_etcd_is_back_within_5s_and_apps_serve_throughout(
    platform: Harness, admin: Key, served: str
) -> None:
    ready = legacy(platform, "etcd").ready
    victim = main_pid(platform, "etcd")
    with load(platform, served) as traffic:
        time.sleep(0.3)
        began = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while not ready():
            assert time.monotonic() - began < 5.0, "etcd not back within 5 s"
            time.sleep(0.05)
        took = time.monotonic() - began
        time.sleep(0.5)
    assert traffic.result.failed == 0, traffic.result.summary()
    assert main_pid(platform, "etcd") != victim
    print(f"etcd back in {took:.2f} s; {traffic.result.summary()}")
    # The appliance's etcd client works again by itself: a command, then a deploy.
    r = platform.ssh(admin, "apps:list", timeout=30)
    assert r.returncode == 0 and served in r.stdout, r.stderr
    r = platform.ssh(admin, "config:set", "--app", served, "AFTER_ETCD=1", timeout=120)
    assert r.returncode == 0, r.stderr
    platform.wait_steady(served)


def test_a_killed_registry_is_back_within_5s_and_pushes_work_again(
    platform: Harness, admin: Key, served: str
) -> None:
    ready = legacy(platform, "registry").ready
    victim = main_pid(platform, "registry")
    with load(platform, served) as traffic:
        time.sleep(0.3)
        began = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while not ready():
            assert time.monotonic() - began < 5.0, "the registry not back within 5 s"
            time.sleep(0.05)
        took = time.monotonic() - began
        time.sleep(0.5)
    assert traffic.result.failed == 0, traffic.result.summary()
    print(f"registry back in {took:.2f} s; {traffic.result.summary()}")
    app = unique("comp-reg")
    r = platform.push(platform.checkout("hello", app), admin)
    assert r.returncode == 0, r.stderr
    r = platform.ssh(admin, "apps:destroy", app, "--confirm", app, timeout=120)
    assert r.returncode == 0, r.stderr


def test_up_takes_over_etcd_and_registry_an_earlier_platform_started_on_the_host(
    platform: Harness, admin: Key, served: str
) -> None:
    """The previous layout: etcd and the registry as loose host processes with pidfiles. `up` stops
    them by their pid and starts the containers on the same data: apps serve throughout, and the
    platform's state and images are all there."""
    s = platform.settings
    for name in ("registry", "etcd"):
        services.stop_component(components.container_name(s, name), platform.out)
    loose = {name: processes.start(legacy(platform, name), s, platform.out) for name in ("etcd", "registry")}
    try:
        assert all(loose.values())
        r = platform.ssh(admin, "apps:list", timeout=30)
        assert r.returncode == 0 and served in r.stdout, r.stderr
        with load(platform, served) as traffic:
            time.sleep(0.3)
            components.up(s, platform.out)
            time.sleep(0.5)
        assert traffic.result.failed == 0, traffic.result.summary()
    finally:
        for name in ("etcd", "registry"):
            processes.stop(legacy(platform, name), s, platform.out)
        components.up(s, platform.out)
    for name, pid in loose.items():
        assert pid is not None and not proc.alive(pid), name
        assert container(platform, name).status == "running"
        assert not processes.pidfile(s, name).exists()
    r = platform.ssh(admin, "apps:list", timeout=30)
    assert r.returncode == 0 and served in r.stdout, r.stderr
    status, body = registry_get(platform, "_catalog")
    assert status == 200 and served in body["repositories"]  # the registry's data, kept
    platform.wait_steady(served)
