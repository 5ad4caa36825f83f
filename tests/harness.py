"""A whole platform on free ports in a temp state dir, driven like a user would: stock git and ssh.

Shared by the end-to-end tests and benchmarks/. dockerd and the stack image are shared with the
host (made once); etcd, the registry and nginx are this harness's own component containers, the
appliance its own container (from this checkout's appliance image, as `deis up` runs it).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from appliance import components, handover, processes
from builders import buildnet
from core.output import Output
from core.proc import alive
from core.settings import Settings
from gitserver.admin import appliance_service, seed_registry
from scheduler.docker import LABEL_PLATFORM
from scheduler.swarm import SwarmBackend
from tests import swarmtest
from tests.pki import TestCA

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "fixtures" / "apps"
# The appliance and the git hook it starts import this checkout, not whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


OWNER_PIDFILE = "test-owner.pid"  # the test process that made a platform (sweep_orphans)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Key:
    name: str
    private: Path

    @property
    def public(self) -> str:
        return Path(f"{self.private}.pub").read_text()


@dataclass
class Harness:
    root: Path
    settings: Settings = field(init=False)
    drain_ca: TestCA = field(init=False)
    out: Output = field(default_factory=lambda: Output(sys.stderr))

    def __post_init__(self) -> None:
        (self.root / "drain-ca").mkdir(parents=True, exist_ok=True)
        self.drain_ca = TestCA.make(self.root / "drain-ca")
        self.settings = Settings(
            state_dir=self.root / "state",
            ssh_host="127.0.0.1",
            ssh_port=free_port(),
            http_port=free_port(),
            https_port=free_port(),
            etcd_port=free_port(),
            etcd_peer_port=free_port(),
            registry_port=free_port(),
            healthcheck_timeout=10.0,
            stop_grace=3.0,
            lock_wait=120.0,
            # The tests' own buildpack repositories live beside the platform, in pytest's temp root.
            local_buildpacks=str(self.root.parent),
            # The drain tests' TLS receivers have certificates of this throwaway CA.
            drain_ca_bundle=self.drain_ca.file,
        )
        own(str(self.settings.state_dir))
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        (self.settings.state_dir / OWNER_PIDFILE).write_text(f"{os.getpid()}\n")
        OWN_REGISTRIES.add(self.settings.registry)

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> Harness:
        self.settings.save()
        components.up(self.settings, self.out)
        seed_registry(self.settings, self.out)
        self.start_appliance()
        return self

    def start_appliance(self) -> None:
        """The appliance's container: started, or handed over when the saved settings changed."""
        handover.start_appliance(self.settings, self.out, appliance_service(self.settings))

    def stop_appliance(self) -> None:
        handover.stop_appliance(self.settings, self.out)

    def wait_appliance(self, timeout: float = 30.0) -> float:
        """Until the appliance's container (started again by the engine or a restart) listens."""
        env = dict(e.split("=", 1) for e in self.appliance_container().attrs["Config"]["Env"])
        name = components.container_name(self.settings, "appliance")
        return handover._wait_ready(
            self.settings, name, env[components.INSTANCE_ENV], timeout, restarting=True
        )

    def restart_appliance(self) -> float:
        """`docker restart` of the appliance (SIGTERM, its sessions end, start); seconds until it listens."""
        began = time.monotonic()
        self.settings.appliance_ready.unlink(missing_ok=True)
        self.appliance_container().restart(timeout=30)
        self.wait_appliance()
        return time.monotonic() - began

    def appliance_container(self) -> Any:
        return docker.from_env().containers.get(components.container_name(self.settings, "appliance"))

    def appliance_pid(self) -> int:
        """The host PID of the appliance's Python process (the container's own, or its init's child)."""
        init = int(self.appliance_container().attrs["State"]["Pid"])
        if Path(f"/proc/{init}/comm").read_text().startswith("python"):
            return init
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == init:
                    children.append(int(stat.parent.name))
        assert len(children) == 1, children
        return children[0]

    def down(self) -> None:
        # The appliance goes first: its reconciler would start again every container removed while
        # it still runs (how a whole suite used to leave five apps running behind it).
        try:
            self.stop_appliance()
        finally:
            try:
                self.remove_containers()
                self.remove_images()
            finally:
                # Last: this stops dockerd too when the harness was the one that started it.
                components.down(self.settings, self.out)

    def remove_containers(self) -> None:
        client = docker.from_env()
        if swarmtest.state(client) == "active":  # the platform's swarm services, the safe way
            swarm = SwarmBackend(str(self.settings.state_dir), client)
            for inst in swarm.instances():
                swarm.stop(inst.id, 0)
            swarm.forget_networks()
        for c in client.containers.list(
            all=True, filters={"label": f"{LABEL_PLATFORM}={self.settings.state_dir}"}
        ):
            c.remove(force=True)
        for net in client.networks.list(filters={"label": f"{LABEL_PLATFORM}={self.settings.state_dir}"}):
            with contextlib.suppress(docker.errors.APIError):
                net.remove()
        buildnet.remove_bridge(str(self.settings.state_dir))

    def remove_images(self) -> None:
        client = docker.from_env()
        for tag in image_tags(client):
            if tag.startswith(f"{self.settings.registry}/"):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)

    # -- users -------------------------------------------------------------------------------
    def key(self, name: str) -> Key:
        path = self.root / "keys" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
            )
        return Key(name, path)

    def add_user(self, name: str, admin: bool = False) -> Key:
        key = self.key(name)
        argv = [
            sys.executable,
            "-m",
            "gitserver.admin",
            "--state-dir",
            str(self.settings.state_dir),
            "keys:add",
            name,
        ]
        r = subprocess.run(
            argv + (["--admin"] if admin else []),
            input=key.public,
            check=False,
            text=True,
            capture_output=True,
        )
        # Users are the session's, so two modules asking for one name collide: say so.
        assert r.returncode == 0, f"keys:add {name}: {r.stderr.strip()}"
        return key

    def ssh_argv(self, key: Key) -> list[str]:
        return [
            "ssh",
            "-i",
            str(key.private),
            "-p",
            str(self.settings.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ]

    def ssh(
        self, key: Key, *command: str, input: str | None = None, timeout: float = 180, tty: bool = False
    ) -> subprocess.CompletedProcess[str]:
        argv = self.ssh_argv(key) + (["-tt"] if tty else []) + ["git@127.0.0.1", *command]
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )

    # -- git ---------------------------------------------------------------------------------
    def git_env(self, key: Key) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_SSH_COMMAND"] = " ".join(self.ssh_argv(key))
        env.update(
            {
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t",
            }
        )
        return env

    def checkout(self, template: str, app: str) -> Path:
        """A git work tree of a fixture app, with the platform as its `deis` remote."""
        work = self.root / "work" / f"{app}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(APPS / template, work)
        self.git(work, "init", "-q", "-b", "master")
        self.git(work, "add", "-A")
        self.git(work, "commit", "-q", "-m", "initial")
        self.git(work, "remote", "add", "deis", self.remote(app))
        return work

    def remote(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.settings.ssh_port}/{app}.git"

    def git(
        self, work: Path, *args: str, key: Key | None = None, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = (
            self.git_env(key)
            if key
            else {
                **os.environ,
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t",
            }
        )
        r = subprocess.run(
            ["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and r.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def push(self, work: Path, key: Key, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.git(work, "push", "deis", *(args or ("master",)), key=key, check=check)

    def commit_change(self, work: Path, path: str, content: str) -> None:
        (work / path).write_text(content)
        self.git(work, "add", "-A")
        self.git(work, "commit", "-q", "-m", f"change {path}")

    # -- http --------------------------------------------------------------------------------
    def get(self, app: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.settings.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": f"{app}.{self.settings.domain}"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def wait_for(self, app: str, text: str, timeout: float = 30) -> float:
        """Poll until the app serves `text`; returns seconds waited."""
        start = time.monotonic()
        last: tuple[int, str] | None = None
        while time.monotonic() - start < timeout:
            try:
                last = self.get(app)
                if last[0] == 200 and text in last[1]:
                    return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{app} did not serve {text!r} within {timeout}s; last: {last}")

    def wait_steady(self, app: str, seconds: float = 1.0, timeout: float = 20) -> None:
        """Wait until the app has answered 200 on one keep-alive connection for `seconds` in a row.

        A test that saw a recovery (the first 200 after a container was replaced) must not hand
        the next test a router still reloading: an old nginx worker finishes the keep-alive
        connections it accepted with the configuration it had (a 503 page, mid-recovery)."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        conn: http.client.HTTPConnection | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.settings.http_port, timeout=5)
                    conn.request("GET", "/", headers={"Host": f"{app}.{self.settings.domain}"})
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                except (OSError, http.client.HTTPException):
                    ok, conn = False, None
                now = time.monotonic()
                since = (since or now) if ok else None
                if since is not None and now - since >= seconds:
                    return
                time.sleep(0.02)
        finally:
            if conn is not None:
                conn.close()
        raise AssertionError(f"{app} did not answer 200 steadily for {seconds}s within {timeout}s")

    def containers(self, app: str) -> list[str]:
        client = docker.from_env()
        found = client.containers.list(
            all=True, filters={"label": [f"{LABEL_PLATFORM}={self.settings.state_dir}", f"io.deis.app={app}"]}
        )
        return sorted(c.name for c in found)


# What this test run made: platform labels (a harness's state dir, a conformance backend's name) and
# registry addresses. `leftovers` checks them once the whole run is over (tests/conftest.py).
OWN_PLATFORMS: set[str] = set()
OWN_REGISTRIES: set[str] = set()
OWN_PREFIXES: set[str] = set()  # pytest's temp root: every state dir a test made lies below it


def own(platform: str) -> str:
    OWN_PLATFORMS.add(platform)
    return platform


def image_tags(client: docker.DockerClient) -> list[str]:
    """Every image tag, from one listing call: `images.list()` inspects each image in turn and fails
    when another run on the shared dockerd removes one in between."""
    return [tag for image in client.api.images() for tag in image.get("RepoTags") or []]


def leftovers() -> list[str]:
    """Every container, network, volume and image this run made that is still there."""
    client = docker.from_env()
    found: list[str] = []
    # The low-level listings: one call each, so nothing removed meanwhile makes them fail.
    api, filters = client.api, {"label": LABEL_PLATFORM}
    labelled: dict[str, list[dict[str, Any]]] = {
        "container": api.containers(all=True, filters=filters),
        "network": api.networks(filters=filters),
        "volume": api.volumes(filters=filters).get("Volumes") or [],
        "image": api.images(all=True, filters=filters),
    }
    with contextlib.suppress(docker.errors.APIError):  # 503: the engine is in no swarm
        labelled["service"] = [
            {"Labels": s["Spec"].get("Labels"), "Name": s["Spec"]["Name"]} for s in api.services()
        ]
    for kind, things in labelled.items():
        for thing in things:
            platform = str((thing.get("Labels") or {}).get(LABEL_PLATFORM, ""))
            if platform in OWN_PLATFORMS or any(platform.startswith(p) for p in OWN_PREFIXES):
                name = thing.get("Name") or (thing.get("Names") or [""])[0].lstrip("/") or thing["Id"][:19]
                found.append(f"{kind} {name}")
    found += [f"image {tag}" for tag in image_tags(client) if tag.split("/", 1)[0] in OWN_REGISTRIES]
    return sorted(set(found))


def sweep_orphans(temp_root: Path) -> list[str]:
    """Remove what a test platform under `temp_root` left when its run was killed (a dockerd stopped under
    it cannot remove anything, and the restart policy brings its containers back with the engine). A
    platform counts as dead when its state dir is gone, or is older than 10 minutes and its appliance no
    longer runs, so a concurrent run's platform is left alone."""
    client = docker.from_env()
    api, prefix = client.api, f"{temp_root}{os.sep}"
    dead: dict[str, bool] = {}

    def is_dead(platform: str) -> bool:
        if platform not in dead:
            state, settings = Path(platform), Settings(state_dir=Path(platform))
            # A platform still coming up has no appliance yet: a young state dir counts as alive.
            young = state.is_dir() and time.time() - state.stat().st_mtime < 600
            # Its appliance is a container the engine brings back after a restart, dead run or not:
            # the test process that made the platform (its pidfile) must live too.
            owner = processes.read_pid(state / OWNER_PIDFILE)
            running = owner is not None and alive(owner) and handover.appliance_running(settings)
            dead[platform] = not (young or running)
        return dead[platform]

    removed = []
    for c in api.containers(all=True, filters={"label": LABEL_PLATFORM}):
        platform = str((c.get("Labels") or {}).get(LABEL_PLATFORM, ""))
        if platform.startswith(prefix) and is_dead(platform):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(c["Id"], force=True)
                removed.append((c.get("Names") or [c["Id"][:12]])[0].lstrip("/"))
    for n in api.networks(filters={"label": LABEL_PLATFORM}):
        platform = str((n.get("Labels") or {}).get(LABEL_PLATFORM, ""))
        if platform.startswith(prefix) and is_dead(platform):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(n["Id"])
    return removed


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
