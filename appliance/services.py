"""The platform's services on the host: dockerd (used if one answers, else started and kept by its
pidfile), the images the components run from, and the components' containers through the docker SDK
(appliance.components says what each container is and composes the bring-up).

Builders here are pure and return data (argv lists, the registry's config text); the code that runs
them is below them. The etcd and registry Services are the previous layout's loose processes: `up`
stops them by their pidfile before it starts the containers on the same data (appliance.processes).

    ensure_dockerd      use the docker daemon that answers, else start one (and only then stop it later)
    ensure_images       the stacks and the component images, made side by side when missing or stale
    ensure_component    start a component's container unless one of the same spec runs; replace it if
                        it was made from another spec; wait_component: until it answers
    stop_component      stop and remove it

Errors are one line each, as ``core.errors.ServiceError``.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.processes import Service, http_ok, read_pid, start, stop
from builders import components as builders_components
from builders import stacks
from core import pki, regauth
from core.errors import ServiceError
from core.output import Output
from core.proc import POLL_INTERVAL, alive, runs
from core.settings import Settings
from scheduler.docker import parse_time

# -- pure builders ----------------------------------------------------------------------------------


def dockerd_argv(settings: Settings) -> list[str]:
    return ["dockerd"]


def etcd_data_dir(settings: Settings) -> Path:
    return settings.state_dir.absolute() / "etcd"


def etcd_argv(settings: Settings) -> list[str]:
    """Clients over mutual TLS only (core.pki): a certificate the platform's CA signed, or no answer.
    The peer URL is plain http on loopback: one member, or members on one host (`etcd_cluster`)."""
    client = settings.etcd_url
    peer = f"http://127.0.0.1:{settings.etcd_peer_port}"
    crt, key = pki.server_paths(settings.tls_dir)
    return [
        "etcd",
        "--name", settings.etcd_name,
        "--data-dir", str(etcd_data_dir(settings)),
        "--enable-v2=true",
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--cert-file", str(crt),
        "--key-file", str(key),
        "--client-cert-auth",
        "--trusted-ca-file", str(pki.ca_path(settings.tls_dir)),
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", settings.etcd_cluster or f"{settings.etcd_name}={peer}",
    ]  # fmt: skip


def etcd_client_context(settings: Settings) -> ssl.SSLContext:
    """What the platform's own probes present to etcd: its CA and the platform's client certificate."""
    tls = settings.etcd_tls
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def etcd_ready(settings: Settings) -> bool:
    """etcd answers the platform's client certificate (false too while the PKI is not made yet)."""
    try:
        ctx = etcd_client_context(settings)
    except OSError:
        return False
    return http_ok(f"{settings.etcd_url}/v2/keys", tls=ctx)


def etcd_answers_plain(settings: Settings) -> bool:
    """Something answers plain http on etcd's port: an earlier platform's etcd, from before TLS."""
    return http_ok(f"http://127.0.0.1:{settings.etcd_port}/v2/keys")


def registry_dir(settings: Settings) -> Path:
    """The registry's config and data (its container mounts it at the same path)."""
    return settings.state_dir.absolute() / "registry"


def registry_config_path(settings: Settings) -> Path:
    return registry_dir(settings) / "config.yml"


def registry_config(settings: Settings) -> str:
    """The registry's config.yml: https only, every request with the platform's password (core.regauth).
    Paths are written as double-quoted scalars (JSON strings are valid YAML)."""
    q, tls = json.dumps, settings.tls_dir
    data_dir = q(str(registry_dir(settings) / "data"))
    crt, key = (str(p) for p in pki.server_paths(tls, "registry"))
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
        "auth:\n"
        "  htpasswd:\n"
        "    realm: deis-registry\n"
        f"    path: {q(str(regauth.htpasswd_path(tls)))}\n"
        "http:\n"
        f"  addr: 127.0.0.1:{settings.registry_port}\n"
        "  tls:\n"
        f"    certificate: {q(crt)}\n"
        f"    key: {q(key)}\n"
    )


def registry_argv(settings: Settings) -> list[str]:
    return ["docker-registry", "serve", str(registry_config_path(settings))]


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
        pid = read_pid(path)
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
        ready=lambda: etcd_ready(settings),
        answers=lambda: etcd_ready(settings) or etcd_answers_plain(settings),
        address=f"127.0.0.1:{settings.etcd_port}",
        package="etcd-server",
        setup=lambda: ensure_pki(settings),
    )


def ensure_pki(settings: Settings) -> None:
    """The CA and the certificates, made once (existing ones are kept)."""
    pki.ensure(settings.tls_dir)


def registry_ready(settings: Settings) -> bool:
    """The registry answers over TLS, to the platform's credentials (false while they are not made)."""
    try:
        auth = settings.registry_auth()
        ctx = ssl.create_default_context(cafile=str(pki.ca_path(settings.tls_dir)))
    except (ServiceError, OSError):
        return False
    return http_ok(f"{settings.registry_url}/v2/", tls=ctx, headers={"Authorization": auth.header()})


def registry_answers_plain(settings: Settings) -> bool:
    """An earlier platform's registry (plain http, no authentication) answers on its port."""
    return http_ok(f"http://127.0.0.1:{settings.registry_port}/v2/")


def prepare_registry(settings: Settings) -> None:
    """What the registry reads at its start: its certificate, the credentials, its config file."""
    ensure_pki(settings)
    regauth.ensure(settings.tls_dir, settings.registry, pki.ca_path(settings.tls_dir))
    write_registry_config(settings)


def write_registry_config(settings: Settings) -> None:
    path = registry_config_path(settings)
    (path.parent / "data").mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(registry_config(settings))
    os.replace(tmp, path)


def registry_service(settings: Settings) -> Service:
    return Service(
        name="registry",
        argv=registry_argv(settings),
        ready=lambda: registry_ready(settings),
        answers=lambda: registry_ready(settings) or registry_answers_plain(settings),
        address=f"127.0.0.1:{settings.registry_port}",
        package="docker-registry",
        setup=lambda: prepare_registry(settings),
    )


def services(settings: Settings) -> list[Service]:
    """etcd and the registry as the previous layout's loose processes, in start order."""
    return [etcd_service(settings), registry_service(settings)]


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


# -- images -----------------------------------------------------------------------------------------


def ensure_images(settings: Settings, out: Output) -> None:
    """The stacks and every component's image, each made only when missing or stale, side by side."""
    stacks.ensure_all(settings, out, extra=builders_components.specs())


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


def find_container(name: str) -> Any | None:
    import docker

    try:
        return _client().containers.get(name)
    except docker.errors.NotFound:
        return None


def run_container(kw: dict[str, Any]) -> Any:
    import docker

    try:
        return _client().containers.run(**kw)
    except docker.errors.APIError as exc:
        raise ServiceError(f"could not start {kw['name']}: {exc.explanation or exc}") from exc


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


def wait_component(name: str, ready: Callable[[], bool], address: str, timeout: float = 30.0) -> float:
    """Wait (bounded) until a component's container answers; seconds waited. On a timeout the error
    carries the container's last log line."""
    import docker

    began = time.monotonic()
    while not ready():
        if time.monotonic() - began >= timeout:
            try:
                tail = _client().containers.get(name).logs(tail=1).decode("utf-8", "replace").strip()
            except docker.errors.DockerException:
                tail = "no log"
            raise ServiceError(
                f"{name} did not answer on {address} within {timeout:g} s: {tail or 'no log'}"
                f" (docker logs {name})"
            )
        time.sleep(POLL_INTERVAL)
    return time.monotonic() - began
