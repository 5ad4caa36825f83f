"""The platform's own components as containers the engine supervises (restart policy
`unless-stopped`: a killed one is started again by dockerd, and after dockerd or the host restarts).

Pure: what each container is (the docker SDK's `containers.run` keyword arguments); appliance.services
runs them. Every path a component uses is under the state dir, mounted at the same path, so a
replaced container loses nothing and the host's view of the files is the component's.

    router  nginx in the foreground (`daemon off`), host network (it listens on the router's ports
            and reaches app containers on 127.0.0.1), host PID namespace (nginx.pid holds a host PID:
            the appliance's routerconf reloads it with SIGHUP as before), SIGQUIT to stop (graceful)

Names: `deis-NAME` for the default state dir, `deis-NAME-HASH` (8 hex digits of the state dir) for
any other, so several platforms (the tests') share one engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from appliance import services
from builders.components import ROUTER_IMAGE
from core.output import Output
from core.settings import Settings
from routerconf import Router
from routerconf.commands import nginx_foreground_argv

LABEL_PLATFORM = "io.deis.platform"  # as on app containers: `Harness.down` and `leftovers` find both
LABEL_COMPONENT = "io.deis.component"
DEFAULT_STATE_DIR = Path("/var/lib/deis")
COMPONENTS = ("router",)


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


def router_kwargs(settings: Settings, image_id: str = "") -> dict[str, Any]:
    """The router's container; `image_id` (the image's current id) is part of its spec digest, so
    a remade image replaces the container."""
    nginx_dir = str(settings.nginx_dir.absolute())
    kw: dict[str, Any] = {
        "image": ROUTER_IMAGE,
        "command": nginx_foreground_argv(f"{nginx_dir}/nginx.conf", nginx_dir),
        "name": container_name(settings, "router"),
        "detach": True,
        "init": True,
        "network_mode": "host",
        "pid_mode": "host",
        "restart_policy": {"Name": "unless-stopped"},
        "stop_signal": "SIGQUIT",
        "volumes": {nginx_dir: {"bind": nginx_dir, "mode": "rw"}},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
    }
    return _with_spec(kw, "router", settings, image_id)


def start_router(settings: Settings, out: Output) -> None:
    """The router's container, from its config files; an nginx an earlier platform started on the
    host (a loose process with a pidfile) is stopped first, gracefully: its port is the container's."""
    router = Router(settings)
    router.prepare()
    current = services.component_state(container_name(settings, "router"))
    loose = router.master_pid()
    if loose is not None and (current is None or current.state != "running"):
        out.detail(f"stopping the router's nginx started by an earlier platform (pid {loose})")
        router.stop()
    services.ensure_component(router_kwargs(settings, services.image_id(ROUTER_IMAGE)), out)
    router.wait_up()


def stop_router(settings: Settings, out: Output) -> None:
    services.stop_component(container_name(settings, "router"), out)
    Router(settings).stop()  # an nginx an earlier platform started on the host, if any
