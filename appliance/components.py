"""The platform's own components as containers the engine supervises (restart policy
`unless-stopped`: a killed one is started again by dockerd, and after dockerd or the host restarts).

What each container is (the docker SDK's `containers.run` keyword arguments) is pure; appliance.services
runs them. Every path a component uses is under the state dir, mounted at the same path, so a
replaced container loses nothing and the host's view of the files is the component's.

    etcd      from deis/services: `etcd` on 127.0.0.1 (host network), data in STATE/etcd
    registry  from deis/services: `docker-registry serve` on 127.0.0.1, config and data in STATE/registry
    router    nginx in the foreground (`daemon off`), host network (it listens on the router's ports
              and reaches app containers on 127.0.0.1), host PID namespace (nginx.pid holds a host PID:
              the appliance's routerconf reloads it with SIGHUP as before), SIGQUIT to stop (graceful)

    up / down  dockerd and the images, then etcd, the registry and the router; down in reverse. A loose
               process of the previous layout (a pidfile under the run dir) is stopped by its pid first and
               the container starts on the same data.

Names: `deis-NAME` for the default state dir, `deis-NAME-HASH` (8 hex digits of the state dir) for
any other, so several platforms (the tests') share one engine.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from appliance import processes, services
from builders import buildnet
from builders.components import ROUTER_IMAGE, SERVICES_IMAGE
from core import proc
from core.errors import ServiceError
from core.output import Output
from core.settings import Settings
from routerconf import Router
from routerconf.commands import nginx_foreground_argv

LABEL_PLATFORM = "io.deis.platform"  # as on app containers: `Harness.down` and `leftovers` find both
LABEL_COMPONENT = "io.deis.component"
DEFAULT_STATE_DIR = Path("/var/lib/deis")
COMPONENTS = ("etcd", "registry", "router", "appliance")
DOCKER_SOCKET = "/var/run/docker.sock"
CGROUPS = "/sys/fs/cgroup"
# mounts and namespaces (buildah, `ip netns`), links and iptables, the processes' /proc, RUN steps'
# own users, files and devices, signals to the router's nginx.
APPLIANCE_CAPS = (
    "SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_CHROOT", "MKNOD", "SETFCAP", "SETPCAP",
    "DAC_READ_SEARCH", "AUDIT_WRITE", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID",
    "SETUID", "NET_BIND_SERVICE", "IPC_LOCK", "SYS_NICE",
)  # fmt: skip
INSTANCE_ENV = "DEIS_APPLIANCE_INSTANCE"  # which start of the appliance this is (see appliance.handover)
_LOGS = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}


def container_name(settings: Settings, component: str) -> str:
    if settings.state_dir.absolute() == DEFAULT_STATE_DIR:
        return f"deis-{component}"
    digest = hashlib.sha256(str(settings.state_dir.absolute()).encode()).hexdigest()[:8]
    return f"deis-{component}-{digest}"


def _with_spec(kw: dict[str, Any], component: str, settings: Settings, image_id: str) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps([kw, image_id], sort_keys=True).encode()).hexdigest()[:16]
    kw["labels"] = {
        LABEL_PLATFORM: str(settings.state_dir),
        LABEL_COMPONENT: component,
        services.SPEC_LABEL: digest,
    }
    return kw


def _base(settings: Settings, component: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "image": image,
        "command": command,
        "name": container_name(settings, component),
        "detach": True,
        "init": True,
        "network_mode": "host",
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": _LOGS,
    }


def router_kwargs(settings: Settings, image_id: str = "") -> dict[str, Any]:
    """The router's container; `image_id` (the image's current id) is part of its spec digest, so
    a remade image replaces the container."""
    nginx_dir = str(settings.nginx_dir.absolute())
    kw = _base(settings, "router", ROUTER_IMAGE, nginx_foreground_argv(f"{nginx_dir}/nginx.conf", nginx_dir))
    kw["pid_mode"] = "host"
    kw["stop_signal"] = "SIGQUIT"
    kw["volumes"] = {nginx_dir: {"bind": nginx_dir, "mode": "rw"}}
    return _with_spec(kw, "router", settings, image_id)


def etcd_kwargs(settings: Settings, image_id: str = "") -> dict[str, Any]:
    data = str(services.etcd_data_dir(settings))
    tls = str(settings.tls_dir)
    kw = _base(settings, "etcd", SERVICES_IMAGE, services.etcd_argv(settings))
    kw["volumes"] = {data: {"bind": data, "mode": "rw"}, tls: {"bind": tls, "mode": "ro"}}
    return _with_spec(kw, "etcd", settings, image_id)


def registry_kwargs(settings: Settings, image_id: str = "") -> dict[str, Any]:
    root = str(services.registry_dir(settings))
    tls = str(settings.tls_dir)
    kw = _base(settings, "registry", SERVICES_IMAGE, services.registry_argv(settings))
    kw["volumes"] = {root: {"bind": root, "mode": "rw"}, tls: {"bind": tls, "mode": "ro"}}
    # It reads its config file once, at its start: another config makes another spec (a restart).
    config = hashlib.sha256(services.registry_config(settings).encode()).hexdigest()[:16]
    kw["environment"] = {"DEIS_CONFIG_DIGEST": config}
    return _with_spec(kw, "registry", settings, image_id)


def appliance_kwargs(settings: Settings, image: str) -> dict[str, Any]:
    """The appliance (SSH server, hook service, reconciler, log collector): the image of this checkout
    (its tag is its code's digest, so other code replaces the container). Privileged, in the host's
    network and PID namespaces: it makes each Dockerfile build's network namespace, veth pair and
    iptables rules (host network), runs buildah (mounts, cgroups), reloads the router's nginx by its
    host PID, and drives the engine through its socket. SIGTERM lets it finish running deploys first
    (appliance.handover), so its stop timeout is the longest a build may take."""
    state = str(settings.state_dir.absolute())
    kw = _base(settings, "appliance", image, ["--state-dir", state, "serve"])
    # Not `privileged`: it asks for every capability, and a host whose own bounding set lacks one
    # (CAP_SYS_RESOURCE here) cannot start such a container. These are what it uses, no more.
    kw["cap_add"] = list(APPLIANCE_CAPS)
    kw["security_opt"] = ["seccomp=unconfined", "apparmor=unconfined"]
    kw["pid_mode"] = "host"
    kw["stop_signal"] = "SIGTERM"
    volumes = {
        state: {"bind": state, "mode": "rw"},
        DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
        # buildah's runtime makes each RUN step's cgroups (the engine mounts them read-only otherwise).
        CGROUPS: {"bind": CGROUPS, "mode": "rw"},
    }
    for ca in (settings.build_ca_bundle, settings.drain_ca_bundle):  # read by it, at their paths
        if ca is not None:
            volumes[str(ca.absolute())] = {"bind": str(ca.absolute()), "mode": "ro"}
    for path in (p for p in settings.local_buildpacks.split(":") if p):
        volumes[path] = {"bind": path, "mode": "ro"}
    kw["volumes"] = volumes
    # It reads the saved settings once, at its start: changed ones make another spec (a handover).
    config = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    kw["environment"] = {"DEIS_CONFIG_DIGEST": config}
    return _with_spec(kw, "appliance", settings, image)


def appliance_stop_timeout(settings: Settings) -> float:
    """How long a stopping appliance may take: a running build's limit, and its rollout after it."""
    return float(settings.build_timeout) + 60.0


# -- bring-up ---------------------------------------------------------------------------------------


def up(settings: Settings, out: Output) -> None:
    """dockerd, the images, then etcd, the registry and the router, each as its container."""
    services.ensure_dockerd(settings, out)
    services.ensure_images(settings, out)
    out.step(f"Starting etcd (container) on 127.0.0.1:{settings.etcd_port}")
    start_etcd(settings, out)
    out.step(f"Starting the registry (container) on 127.0.0.1:{settings.registry_port}")
    start_registry(settings, out)
    out.step(f"Starting the router (nginx, container) on port {settings.http_port}")
    start_router(settings, out)


def down(settings: Settings, out: Output, engine: bool = True) -> None:
    """The router, the registry and etcd (containers, and loose processes of the previous layout),
    then dockerd if this platform started it. `engine` False: dockerd does not answer, so only the
    loose processes are looked for."""
    if engine:
        services.stop_component(container_name(settings, "router"), out)
        buildnet.remove_bridge(str(settings.state_dir))
    Router(settings).stop()  # an nginx an earlier platform started on the host, if any
    for legacy in reversed(services.services(settings)):
        if engine:
            services.stop_component(container_name(settings, legacy.name), out)
        processes.stop(legacy, settings, out)
    services.stop_dockerd(settings, out)


def _take_over(settings: Settings, legacy: processes.Service, out: Output) -> None:
    """Before a component's container starts: stop a loose process of the previous layout (its
    pidfile) so the container can have its port and data; refuse a stranger on that port."""
    current = services.component_state(container_name(settings, legacy.name))
    if current is not None and current.state in ("running", "restarting"):
        return
    pid = processes.running_pid(legacy, settings)
    if pid is not None:
        out.detail(f"stopping the {legacy.name} process an earlier platform started (pid {pid})")
        processes.stop(legacy, settings, out)
    elif legacy.occupied():
        raise ServiceError(
            f"{legacy.name}: something this platform did not start already answers on {legacy.address};"
            " stop it or choose another port"
        )


def _start(settings: Settings, legacy: processes.Service, kw: dict[str, Any], out: Output) -> None:
    _take_over(settings, legacy, out)
    services.ensure_component(kw, out)
    took = services.wait_component(kw["name"], legacy.ready, legacy.address, legacy.ready_timeout)
    out.detail(f"{legacy.name} answers on {legacy.address} ({took:.1f} s)")


def start_etcd(settings: Settings, out: Output) -> None:
    services.etcd_data_dir(settings).mkdir(mode=0o700, parents=True, exist_ok=True)
    services.ensure_pki(settings)  # once: existing certificates are kept
    kw = etcd_kwargs(settings, services.image_id(SERVICES_IMAGE))
    _start(settings, services.etcd_service(settings), kw, out)


def start_registry(settings: Settings, out: Output) -> None:
    services.prepare_registry(settings)
    kw = registry_kwargs(settings, services.image_id(SERVICES_IMAGE))
    _start(settings, services.registry_service(settings), kw, out)


def start_router(settings: Settings, out: Output, image_id: str | None = None) -> None:
    """The router's container, from its config files; an nginx an earlier platform started on the
    host (a loose process with a pidfile) is stopped first, gracefully: its port is the container's.
    A running router of another spec is handed over to (`hand_over_router`)."""
    router = Router(settings)
    router.prepare()  # a running nginx reloads it: its sockets get SO_REUSEPORT for a handover
    kw = router_kwargs(settings, services.image_id(ROUTER_IMAGE) if image_id is None else image_id)
    current = services.find_container(kw["name"])
    loose = router.master_pid()
    if loose is not None and (current is None or current.status != "running"):
        out.detail(f"stopping the router's nginx started by an earlier platform (pid {loose})")
        router.stop()
    spec = (
        None
        if current is None or current.status != "running"
        else (current.labels or {}).get(services.SPEC_LABEL)
    )
    if spec is not None and spec != kw["labels"][services.SPEC_LABEL]:
        hand_over_router(router, current, kw, out)
        return
    services.ensure_component(kw, out)
    router.wait_up()


def hand_over_router(
    router: Router, old: Any, kw: dict[str, Any], out: Output, timeout: float = 15.0
) -> None:
    """The new nginx listens beside the old one (reuseport), then the old one quits gracefully
    (SIGQUIT: it finishes the requests it holds); no connection is refused meanwhile."""
    out.detail(f"handing over from {old.name} (made from another version)")
    before = router.master_pid()
    old.rename(f"{kw['name']}-old-{old.id[:12]}")
    services.run_container(kw)
    deadline = time.monotonic() + timeout
    while (pid := router.master_pid()) in (None, before) or not proc.children(pid):
        if time.monotonic() > deadline:
            raise ServiceError(
                f"the new router did not start within {timeout:g} s (docker logs {kw['name']})"
            )
        time.sleep(proc.POLL_INTERVAL)
    old.stop(timeout=30)
    old.remove(force=True)
    router.adopt(pid)  # the old master removed the pidfile both share as it quit
    router.wait_up()
    out.detail(f"{kw['name']} serves (nginx master pid {pid})")


def stop_router(settings: Settings, out: Output) -> None:
    services.stop_component(container_name(settings, "router"), out)
    Router(settings).stop()  # an nginx an earlier platform started on the host, if any
