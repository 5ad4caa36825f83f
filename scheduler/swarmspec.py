"""Docker Swarm's shapes for the swarm backend, pure: the service one instance is, and how a
service's tasks read as an Instance. Kept apart from the backend so tests compare them exactly.

One service per instance (not one per process type with replicas): a service's replicas share
one spec and are renamed by the swarm, so `APP_vN.TYPE.NUM`, a restart of one instance beside
itself and the reconciler's per-instance view would all have to be emulated on top. A service per
instance keeps every Backend rule as it is; the swarm still places, restarts and moves it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.names import ContainerName
from scheduler.base import Instance, ProcessSpec
from scheduler.docker import CAP_DROP, NETWORK_OPTIONS, parse_time

LABEL_PLATFORM = "io.deis.platform"  # on the service
# On the task's container: not io.deis.platform, or the docker backend of the same platform (on
# the same engine) would take swarm tasks for containers of its own.
LABEL_TASK_PLATFORM = "io.deis.swarm.platform"
LABEL_APP = "io.deis.app"
LABEL_SERVICE_ID = "com.docker.swarm.service.id"  # the engine's, on every task container
# The swarm sends SIGTERM and waits this long before SIGKILL (a stop asks for less where it can).
STOP_GRACE = 30.0
RESTART_DELAY = 1.0  # seconds between a crash and the new task (docker's own is 5 s)
# Task states (swarmkit's api.TaskState) as the Backend's instance states.
_WAITING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
_ENDED = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}


def network_name(platform: str) -> str:
    return "deis-swarm-apps-" + hashlib.sha256(platform.encode()).hexdigest()[:12]


def network_specs(platform: str) -> list[dict[str, Any]]:
    """POST /networks/create bodies, in order: the per-node config network, then the swarm one
    (docker-py's create_network has no ConfigOnly / ConfigFrom)."""
    name = network_name(platform)
    labels = {LABEL_PLATFORM: platform}
    bridge = "dsw-" + hashlib.sha256(platform.encode()).hexdigest()[:11]  # at most 15 characters
    return [
        {
            "Name": f"{name}-config",
            "ConfigOnly": True,
            "Options": {**NETWORK_OPTIONS, "com.docker.network.bridge.name": bridge},
            "Labels": labels,
            "CheckDuplicate": True,
        },
        {
            "Name": name,
            "Driver": "bridge",
            "Scope": "swarm",
            # Labels too count as settings of its own, which a network made from a config refuses.
            "ConfigFrom": {"Network": f"{name}-config"},
            "CheckDuplicate": True,
        },
    ]


def service_labels(name: ContainerName, platform: str) -> dict[str, str]:
    return {
        LABEL_PLATFORM: platform,
        LABEL_APP: name.app,
        "io.deis.version": str(name.version),
        "io.deis.type": name.type,
        "io.deis.num": str(name.num),
        "io.deis.name": str(name),
    }


def constraints(placement: dict[str, str]) -> list[str]:
    """`tags:set` KEY=VALUE pairs as swarm placement constraints on node labels."""
    return [f"node.labels.{key}=={value}" for key, value in sorted(placement.items())]


def service_spec(
    spec: ProcessSpec,
    platform: str,
    service_name: str,
    *,
    one_off: bool = False,
    networks: list[str] | None = None,
) -> dict[str, Any]:
    """The engine API's ServiceSpec for one instance (POST /services/create), as a plain dict."""
    container: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],  # one argument each: values stay exact
        "Labels": {LABEL_TASK_PLATFORM: platform, LABEL_APP: spec.name.app},
        "Init": True,
        "StopGracePeriod": int(STOP_GRACE * 1e9),
        # (no-new-privileges has no place in a service spec of API 1.41: not set on swarm tasks)
        "CapabilityDrop": [f"CAP_{cap}" for cap in CAP_DROP],
    }
    if spec.command is not None:
        container["Command"] = list(spec.command)
    if spec.mounts:
        container["Mounts"] = [
            {"Type": "bind", "Source": host, "Target": inside, "ReadOnly": False}
            for host, inside in spec.mounts
        ]
    limits: dict[str, Any] = {}
    if spec.memory:
        limits["MemoryBytes"] = spec.memory
    if spec.pids_limit:
        limits["Pids"] = spec.pids_limit
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {"Limits": limits} if limits else {},
        "RestartPolicy": (
            {"Condition": "none"}
            if one_off
            else {"Condition": "any", "Delay": int(RESTART_DELAY * 1e9), "MaxAttempts": 0}
        ),
        "Placement": {"Constraints": constraints(dict(spec.placement))} if spec.placement else {},
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}},
    }
    if networks:
        task["Networks"] = [{"Target": net} for net in networks]
    out: dict[str, Any] = {
        "Name": service_name,
        "Labels": service_labels(spec.name, platform),
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    if spec.port is not None and not one_off:
        # Host mode at a port the engine picks: the ingress mesh and VIPs need IPVS (absent here),
        # and the router reaches each task at its node's address anyway.
        out["EndpointSpec"] = {
            "Mode": "dnsrr",
            "Ports": [{"Protocol": "tcp", "TargetPort": spec.port, "PublishMode": "host"}],
        }
    return out


def current_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The task that speaks for the service now: the newest one meant to run, else the newest."""
    if not tasks:
        return None
    ordered = sorted(tasks, key=lambda t: (t.get("Version", {}).get("Index", 0), t.get("CreatedAt", "")))
    meant = [t for t in ordered if t.get("DesiredState") == "running"]
    return (meant or ordered)[-1]


def task_state(task: dict[str, Any] | None) -> str:
    state = str(((task or {}).get("Status") or {}).get("State") or "")
    if state == "running":
        return "running"
    if state in _WAITING:
        return "created"
    if state in _ENDED:
        return "exited"
    return "unknown"


def task_port(task: dict[str, Any] | None) -> int | None:
    """The node port the engine published the task's $PORT at."""
    ports = (((task or {}).get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    for port in ports:
        if port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


def instance(
    service: dict[str, Any], tasks: list[dict[str, Any]], nodes: dict[str, tuple[str, str]]
) -> Instance | None:
    """A service and its tasks as the instance they are; `nodes`: node id -> (address, hostname)."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    name = ContainerName.parse(labels.get("io.deis.name", ""))
    if name is None:
        return None
    task = current_task(tasks)
    env = ((service["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Env") or []
    values = dict(e.split("=", 1) for e in env if "=" in e)
    port = int(values["PORT"]) if values.get("PORT", "").isdigit() else None
    address, hostname = nodes.get(str((task or {}).get("NodeID") or ""), ("", ""))
    published = task_port(task)
    state = task_state(task)
    if task is None:  # none yet (just made), or none any more (scaled to zero by a stop)
        replicas = ((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)
        state = "exited" if replicas == 0 else "created"
    slot = (task or {}).get("Slot")
    return Instance(
        name=name,
        id=str(service["ID"]),
        state=state,
        endpoint=f"{address}:{published}" if address and published and port is not None else None,
        port=port,
        started=parse_time(str((task or {}).get("Status", {}).get("Timestamp", "")))
        if state == "running"
        else 0.0,
        restarts=max(0, len([t for t in tasks if t.get("Slot") == slot]) - 1),
        node=hostname,
    )


def ran(task: dict[str, Any] | None) -> bool:
    """Whether the task's process started (it has an exit status), not refused before it could."""
    status = (task or {}).get("Status") or {}
    return (status.get("ContainerStatus") or {}).get("ExitCode") is not None and status.get(
        "State"
    ) != "rejected"


def exit_code(task: dict[str, Any] | None) -> int | None:
    """A finished task's exit status; None while it has not finished."""
    status = (task or {}).get("Status") or {}
    if status.get("State") not in _ENDED:
        return None
    code = int((status.get("ContainerStatus") or {}).get("ExitCode") or 0)
    if status.get("State") == "shutdown" and code == 0:
        return 128 + 15  # the swarm stopped it (a stop by name): as SIGTERM's status
    return code
