"""Bringing the platform's services up and keeping them: dockerd, etcd and the registry.

Builders here are pure and return data (argv lists, the registry's config text); the code that runs
them is below them. Every process this module starts is detached (its own session), logs to
``LOG_DIR/NAME.log`` and leaves its PID in ``RUN_DIR/NAME.pid``. Stopping a service signals only the
PID from that pidfile, and only if that process still runs the program we started (a PID can be
reused): nothing else on the machine is ever signalled.

    ensure_dockerd      use the docker daemon that answers, else start one (and only then stop it later)
    start / stop        one path for every Service: idempotent start, bounded readiness wait,
                        SIGTERM, wait, SIGKILL
    up_services         dockerd, the images (builders.stacks), etcd, registry (nginx and the SSH
                        appliance start in gitserver.admin)
    down_services       registry, etcd, and dockerd if we started it

Errors are one line each, as ``core.errors.ServiceError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders import components as builders_components
from builders import stacks
from core.errors import ServiceError
from core.output import Output
from core.proc import POLL_INTERVAL, alive, last_line, runs, terminate
from core.settings import Settings
from scheduler.docker import parse_time

# -- pure builders ----------------------------------------------------------------------------------


def dockerd_argv(settings: Settings) -> list[str]:
    return ["dockerd"]


def etcd_argv(settings: Settings) -> list[str]:
    client = f"http://127.0.0.1:{settings.etcd_port}"
    peer = f"http://127.0.0.1:{settings.etcd_peer_port}"
    return [
        "etcd",
        "--name", "deis",
        "--data-dir", str(settings.state_dir / "etcd"),
        "--enable-v2=true",
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"deis={peer}",
    ]  # fmt: skip


def registry_config_path(settings: Settings) -> Path:
    return settings.state_dir / "registry" / "config.yml"


def registry_config(settings: Settings) -> str:
    """The registry's config.yml. Paths are written as double-quoted scalars (JSON strings are valid YAML)."""
    data_dir = json.dumps(str(settings.state_dir / "registry" / "data"))
    return (
        "version: 0.1\n"
        "log:\n"
        "  fields:\n"
        "    service: registry\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "  filesystem:\n"
        f"    rootdirectory: {data_dir}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{settings.registry_port}\n"
    )


def registry_argv(settings: Settings) -> list[str]:
    return ["docker-registry", "serve", str(registry_config_path(settings))]


# -- readiness probes -------------------------------------------------------------------------------

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of a loopback URL answers 200."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"readiness probes stay on loopback, not {url}")
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def docker_answers(timeout: float = 3.0) -> bool:
    """True when the docker daemon (DOCKER_HOST or the default socket) answers a ping."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # the SDK raises DockerException, requests' errors or OSError: all mean "no"
        return False


# -- services ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A process we start, wait for, and stop by our own pidfile."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    address: str = ""
    package: str = ""  # the Debian package that provides argv[0], for error messages
    # A healthy instance that someone else started is fine to use (dockerd); otherwise it is an error.
    shared: bool = False
    ready_timeout: float = 30.0
    stop_grace: float = 10.0
    setup: Callable[[], None] | None = None


# The daemons' own pidfiles. After a reboot or a restored snapshot one may name a PID that another process
# now has, and dockerd then refuses to start ("pid file found, ensure docker is not running").
DAEMON_PIDFILES = {
    Path("/var/run/docker.pid"): "dockerd",
    Path("/var/run/docker/containerd/containerd.pid"): "containerd",
}


def remove_stale_pidfiles(pidfiles: dict[Path, str] = DAEMON_PIDFILES) -> list[Path]:
    """Remove each pidfile whose PID is not a live process of its program; returns those removed."""
    removed = []
    for path, program in pidfiles.items():
        if not path.exists():
            continue
        pid = _read_pid(path)
        if pid is not None and alive(pid) and runs(pid, program):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _before_dockerd() -> None:
    remove_stale_pidfiles()


def dockerd_service(settings: Settings) -> Service:
    return Service(
        name="dockerd",
        argv=dockerd_argv(settings),
        ready=docker_answers,
        address="unix:///var/run/docker.sock",
        package="docker.io",
        shared=True,
        ready_timeout=30.0,
        # dockerd stops running containers (10 s each by default) before it exits.
        stop_grace=60.0,
        setup=_before_dockerd,
    )


def etcd_service(settings: Settings) -> Service:
    return Service(
        name="etcd",
        argv=etcd_argv(settings),
        ready=lambda: http_ok(f"http://127.0.0.1:{settings.etcd_port}/v2/keys"),
        address=f"127.0.0.1:{settings.etcd_port}",
        package="etcd-server",
    )


def registry_service(settings: Settings) -> Service:
    def setup() -> None:
        path = registry_config_path(settings)
        (path.parent / "data").mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(registry_config(settings))
        os.replace(tmp, path)

    return Service(
        name="registry",
        argv=registry_argv(settings),
        ready=lambda: http_ok(f"http://127.0.0.1:{settings.registry_port}/v2/"),
        address=f"127.0.0.1:{settings.registry_port}",
        package="docker-registry",
        setup=setup,
    )


def services(settings: Settings) -> list[Service]:
    """The services `up_services` starts with the shared start path, in start order."""
    return [etcd_service(settings), registry_service(settings)]


def pidfile(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def logfile(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def running_pid(service: Service, settings: Settings) -> int | None:
    """The PID from our pidfile if that process is alive and still runs the program we started."""
    pid = _read_pid(pidfile(settings, service.name))
    if pid is None or not alive(pid):
        return None
    return pid if runs(pid, service.argv[0]) else None


def start(service: Service, settings: Settings, out: Output, timeout: float | None = None) -> int | None:
    """Start ``service`` unless ours already runs; wait until it is ready. Returns our PID.

    Returns None when a ``shared`` service is already answering and someone else started it.
    """
    timeout = service.ready_timeout if timeout is None else timeout
    with _lock(settings, service.name):
        pid = running_pid(service, settings)
        if pid is not None:
            if service.ready():
                out.detail(f"{service.name} already running (pid {pid})")
                return pid
            out.detail(f"{service.name} is starting (pid {pid}), waiting for it")
            _wait_ready(service, settings, pid, timeout)
            return pid
        pidfile(settings, service.name).unlink(missing_ok=True)  # stale, if any
        if service.ready():
            if service.shared:
                out.detail(f"{service.name} already answering on {service.address}, using it")
                return None
            raise ServiceError(
                f"{service.name}: something this platform did not start already answers on {service.address};"
                " stop it or choose another port"
            )
        return _spawn(service, settings, out, timeout)


def stop(service: Service, settings: Settings, out: Output, grace: float | None = None) -> bool:
    """Stop our own process of ``service`` (from its pidfile). True if one was running."""
    path = pidfile(settings, service.name)
    if not path.exists():
        return False
    grace = service.stop_grace if grace is None else grace
    with _lock(settings, service.name):
        pid = _read_pid(path)
        if pid is None or not alive(pid) or not runs(pid, service.argv[0]):
            path.unlink(missing_ok=True)
            out.detail(f"{service.name} was not running (removed a stale pidfile)")
            return False
        out.step(f"Stopping {service.name} (pid {pid})")
        terminate(pid, grace, service.name)
        path.unlink(missing_ok=True)
        return True


def is_running(service: Service, settings: Settings) -> bool:
    """Ours runs and answers."""
    return running_pid(service, settings) is not None and service.ready()


def status(settings: Settings) -> dict[str, bool]:
    """dockerd: the daemon answers (whoever started it); others: our process runs and answers."""
    result = {"dockerd": docker_answers()}
    for service in services(settings):
        result[service.name] = is_running(service, settings)
    return result


# -- dockerd ----------------------------------------------------------------------------------------


def ensure_dockerd(settings: Settings, out: Output, timeout: float = 30.0) -> None:
    """Use the docker daemon that answers; otherwise start dockerd and wait (bounded) until it answers."""
    if docker_answers():
        return
    out.step("Starting dockerd")
    start(dockerd_service(settings), settings, out, timeout=timeout)


def stop_dockerd(settings: Settings, out: Output) -> bool:
    """Stop dockerd only if this platform started it (its pidfile exists)."""
    return stop(dockerd_service(settings), settings, out)


# -- bring-up and tear-down -------------------------------------------------------------------------


def up_services(settings: Settings, out: Output) -> None:
    """dockerd, the images, etcd, the registry. The router and the SSH appliance start elsewhere."""
    ensure_dockerd(settings, out)
    stacks.ensure_all(settings, out)
    builders_components.ensure_router_image(settings, out)
    for service in services(settings):
        out.step(f"Starting {service.name} on {service.address}")
        start(service, settings, out)


def down_services(settings: Settings, out: Output) -> None:
    """Stop the registry and etcd, and dockerd only if we started it."""
    for service in reversed(services(settings)):
        stop(service, settings, out)
    stop_dockerd(settings, out)


# -- components as containers (appliance.components says what each is) ----------------------------


SPEC_LABEL = "io.deis.spec"  # a digest of what a component's container was made from


@dataclass(frozen=True)
class ComponentState:
    state: str  # running, restarting, exited, ... (the engine's word)
    started: float  # UNIX time it last started
    restarts: int  # how often the engine restarted it


def _client() -> Any:
    import docker

    try:
        return docker.from_env(timeout=60)
    except docker.errors.DockerException as exc:
        raise ServiceError(f"docker is unreachable: {exc}") from exc


def component_state(name: str) -> ComponentState | None:
    import docker

    try:
        attrs = _client().api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    state = attrs["State"]
    status = "restarting" if state.get("Restarting") else str(state.get("Status", "unknown"))
    return ComponentState(status, parse_time(state.get("StartedAt", "")), int(attrs.get("RestartCount") or 0))


def ensure_component(kw: dict[str, Any], out: Output) -> None:
    """Start the component's container unless one made from the same spec runs; one made from
    another spec (an older checkout or image) is stopped and replaced."""
    import docker

    client = _client()
    try:
        c = client.containers.get(kw["name"])
    except docker.errors.NotFound:
        c = None
    if c is not None:
        same = (c.labels or {}).get(SPEC_LABEL) == kw["labels"][SPEC_LABEL]
        if same and c.status in ("running", "restarting"):
            out.detail(f"{kw['name']} already running")
            return
        if not same:
            out.detail(f"replacing {kw['name']} (made from another version)")
        c.stop(timeout=10)
        c.remove(force=True)
    try:
        client.containers.run(**kw)
    except docker.errors.APIError as exc:
        raise ServiceError(f"could not start {kw['name']}: {exc.explanation or exc}") from exc
    out.detail(f"{kw['name']} started (restart policy {kw['restart_policy']['Name']})")


def stop_component(name: str, out: Output, grace: float = 10.0) -> bool:
    """Stop (its stop signal, SIGKILL after `grace`) and remove a component's container."""
    import docker

    try:
        c = _client().containers.get(name)
    except docker.errors.NotFound:
        return False
    out.step(f"Stopping {name}")
    c.stop(timeout=int(grace))
    c.remove(force=True)
    return True


def image_id(image: str) -> str:
    import docker

    try:
        return str(_client().images.get(image).id)
    except docker.errors.ImageNotFound as exc:
        raise ServiceError(f"no image {image}; run ./platform up to make it") from exc


# -- running processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(settings: Settings, name: str) -> Iterator[None]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _spawn(service: Service, settings: Settings, out: Output, timeout: float) -> int:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    if service.setup is not None:
        service.setup()
    log = logfile(settings, service.name)
    began = time.monotonic()
    with open(log, "ab") as fh:
        fh.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(service.argv)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            hint = f" (install the {service.package} package)" if service.package else ""
            raise ServiceError(f"{service.name}: {service.argv[0]} not found{hint}") from exc
        except OSError as exc:
            raise ServiceError(f"{service.name}: cannot start {service.argv[0]}: {exc}") from exc
    path = pidfile(settings, service.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, path)
    try:
        _wait_ready(service, settings, proc.pid, timeout, proc)
    except ServiceError:
        path.unlink(missing_ok=True)
        raise
    out.detail(f"{service.name} ready in {time.monotonic() - began:.1f} s (pid {proc.pid}, log {log})")
    return proc.pid


def _wait_ready(
    service: Service,
    settings: Settings,
    pid: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    log = logfile(settings, service.name)
    deadline = time.monotonic() + timeout
    while True:
        if service.ready():
            return
        code = proc.poll() if proc is not None else None
        if code is not None or (proc is None and not alive(pid)):
            why = f"exited with status {code}" if code is not None else "exited"
            raise ServiceError(f"{service.name} {why} before it was ready: {last_line(log)} (see {log})")
        if time.monotonic() >= deadline:
            where = service.address or "its address"
            if proc is None:  # not started by this call: report, leave it to `down`
                raise ServiceError(
                    f"{service.name} (pid {pid}) runs but did not answer on {where} within {timeout:g} s;"
                    f" stop it and start again (see {log})"
                )
            terminate(pid, 5.0, service.name)
            proc.poll()
            raise ServiceError(
                f"{service.name} was not ready on {where} after {timeout:g} s; stopped it:"
                f" {last_line(log)} (see {log})"
            )
        time.sleep(POLL_INTERVAL)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
