"""`deis cloud-config`: `#cloud-config` user-data for a CoreOS Container Linux / Flatcar cluster node,
rendered from the jinja2 templates in the top-level `cloud-config/` folder. Pure: from a NodeSpec to text.

A node is written in Deis v1's shape (contrib/coreos/user-data), for coreos-cloudinit's `coreos:` keys:
    etcd2       control: a member of the cluster given by --etcd-peers (default: a cluster of itself);
                worker: a proxy to those peers (workers need --etcd-peers)
    docker      a drop-in giving dockerd `--insecure-registry` for the platform registry (plain HTTP on
                the private network) and `--label KEY=VALUE` per metadata item (swarm placement)
    fleet       `coreos.fleet` with `role=ROLE` plus the metadata (the fleet backend's MachineMetadata)
    swarm       a oneshot unit: `docker swarm init` (first control node) or `docker swarm join`
    components  control nodes only: the registry, the router and the appliance as units running the
                platform's component images (`docker run --rm` supervised by systemd, as the fleet
                backend's units are; etcd is the OS's etcd2 here)
Values reach systemd through core.systemd (specifiers, `$`, quotes) and YAML through `tojson`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jinja2

from appliance import components, services
from core import dockercli, systemd
from core.errors import ValidationError
from core.settings import Settings
from scheduler import swarmspec

TEMPLATES: Final = Path(__file__).resolve().parent.parent / "cloud-config"
ROLES: Final = ("control", "worker")
ENGINES: Final = ("swarm", "fleet")
DOCKER: Final = "/usr/bin/docker"
NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
META_WORD = re.compile(r"[A-Za-z0-9_.-]{1,63}")
PEER = re.compile(r"([a-z0-9][a-z0-9-]{0,62})=(https?://[A-Za-z0-9.:\[\]$_-]+)")
ENDPOINT = re.compile(r"https://[A-Za-z0-9.\[\]:_-]+:[0-9]{1,5}")  # an etcd member's client URL
ADDRESS = re.compile(r"[A-Za-z0-9.\[\]:$_-]{1,255}:[0-9]{1,5}")
TOKEN = re.compile(r"SWMTKN-[A-Za-z0-9-]{1,200}")
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
PRIVATE_IP: Final = "$private_ipv4"  # coreos-cloudinit replaces it with the node's address


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str
    engine: str
    etcd_peers: tuple[tuple[str, str], ...] = ()  # (member name, peer URL)
    registry: str = ""  # HOST:PORT of the platform registry; default: this control node's
    metadata: tuple[tuple[str, str], ...] = ()
    swarm_manager: str = ""  # HOST:PORT to join; empty on a control node: init a swarm
    swarm_token: str = ""
    appliance_image: str = "deis/appliance:latest"
    settings: Settings = field(default_factory=lambda: Settings(state_dir=components.DEFAULT_STATE_DIR))


def parse_peers(text: str) -> tuple[tuple[str, str], ...]:
    """`NAME=URL,NAME=URL` (etcd's initial-cluster form)."""
    peers = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        m = PEER.fullmatch(item)
        if not m:
            raise ValidationError(f"--etcd-peers items look like node1=http://10.0.0.1:2380, not {item!r}")
        peers.append((m.group(1), m.group(2)))
    return tuple(peers)


def parse_metadata(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, _, value = item.partition("=")
        if not (META_WORD.fullmatch(key) and META_WORD.fullmatch(value)):
            raise ValidationError(
                f"--metadata items look like region=eu-1 (letters, digits, ._-), not {item!r}"
            )
        out.append((key, value))
    return tuple(out)


def check(spec: NodeSpec) -> None:
    """Every input, with a one-line message; what reaches the templates is known to be well formed."""
    if not NODE_NAME.fullmatch(spec.name):
        raise ValidationError(
            f"node names are lowercase letters, digits and '-' (a hostname), not {spec.name!r}"
        )
    if spec.role not in ROLES:
        raise ValidationError(f"--role is control or worker, not {spec.role!r}")
    if spec.engine not in ENGINES:
        raise ValidationError(f"--engine is swarm or fleet, not {spec.engine!r}")
    check_worker(spec)
    check_addresses(spec)


def check_worker(spec: NodeSpec) -> None:
    if spec.role == "worker":
        if not spec.etcd_peers:
            raise ValidationError("a worker proxies to the control nodes' etcd: give --etcd-peers")
        if not spec.registry:
            raise ValidationError("a worker pulls from a control node's registry: give --registry HOST:PORT")
        if spec.engine == "swarm" and not (spec.swarm_manager and spec.swarm_token):
            raise ValidationError("a swarm worker joins a manager: give --swarm-manager and --swarm-token")


def check_addresses(spec: NodeSpec) -> None:
    if spec.registry and not ADDRESS.fullmatch(spec.registry):
        raise ValidationError(f"--registry is HOST:PORT, not {spec.registry!r}")
    if spec.swarm_manager and not ADDRESS.fullmatch(spec.swarm_manager):
        raise ValidationError(f"--swarm-manager is HOST:PORT, not {spec.swarm_manager!r}")
    if bool(spec.swarm_manager) != bool(spec.swarm_token):
        raise ValidationError("--swarm-manager and --swarm-token go together")
    if spec.swarm_token and not TOKEN.fullmatch(spec.swarm_token):
        raise ValidationError("--swarm-token is the SWMTKN-... token `docker swarm join-token` prints")
    if not IMAGE.fullmatch(spec.appliance_image):
        raise ValidationError(f"--appliance-image is an image reference, not {spec.appliance_image!r}")


def registry_of(spec: NodeSpec) -> str:
    return spec.registry or f"{PRIVATE_IP}:{spec.settings.registry_port}"


def etcd_options(spec: NodeSpec) -> list[tuple[str, str]]:
    peers = spec.etcd_peers or ((spec.name, f"http://{PRIVATE_IP}:2380"),)
    cluster = ",".join(f"{name}={url}" for name, url in peers)
    if spec.role == "worker":
        return [
            ("proxy", "on"),
            ("listen-client-urls", "http://127.0.0.1:2379"),
            ("initial-cluster", cluster),
        ]
    return [
        ("advertise-client-urls", f"http://{PRIVATE_IP}:2379"),
        ("initial-advertise-peer-urls", f"http://{PRIVATE_IP}:2380"),
        ("listen-client-urls", "http://0.0.0.0:2379"),
        ("listen-peer-urls", f"http://{PRIVATE_IP}:2380"),
        ("initial-cluster", cluster),
        ("initial-cluster-state", "new"),
    ]


def docker_run_argv(kw: dict[str, Any]) -> list[str]:
    """The `docker run` a component's SDK keyword arguments (appliance.components) describe, for a unit:
    `--rm` in the foreground (systemd supervises it, so no restart policy and no detach)."""
    argv = [DOCKER, "run", "--rm", "--name", kw["name"]]
    argv += ["--init"] if kw.get("init") else []
    argv += ["--network", kw["network_mode"]] if kw.get("network_mode") else []
    argv += ["--pid", kw["pid_mode"]] if kw.get("pid_mode") else []
    argv += ["--stop-signal", kw["stop_signal"]] if kw.get("stop_signal") else []
    for cap in kw.get("cap_add", ()):
        argv += ["--cap-add", cap]
    for opt in kw.get("security_opt", ()):
        argv += ["--security-opt", opt]
    for key, value in kw.get("labels", {}).items():
        argv += ["--label", f"{key}={value}"]
    for source, bind in kw.get("volumes", {}).items():
        argv += ["-v", f"{source}:{bind['bind']}:{bind['mode']}"]
    for key, value in kw.get("environment", {}).items():  # the appliance's config digest: no secret
        argv += ["-e", f"{key}={value}"]
    return [*argv, kw["image"], *kw["command"]]


def _unit(name: str, content: str = "", dropins: tuple[dict[str, str], ...] = ()) -> dict[str, Any]:
    """One entry of `coreos.units`: started at boot; a unit with content is also enabled."""
    return {"name": name, "command": "start", "enable": bool(content), "content": content, "dropins": dropins}


def registry_config(spec: NodeSpec) -> str:
    """The registry component's config.yml, listening on the private network (workers pull from it)."""
    text = services.registry_config(spec.settings)
    return text.replace(
        f"addr: 127.0.0.1:{spec.settings.registry_port}", f"addr: :{spec.settings.registry_port}"
    )


def _env(spec: NodeSpec) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # not HTML: YAML scalars pass tojson, unit values core.systemd
    )
    return env


def component_units(spec: NodeSpec, env: jinja2.Environment) -> list[dict[str, Any]]:
    s = spec.settings
    kwargs = {
        "registry": components.registry_kwargs(s),
        "router": components.router_kwargs(s),
        "appliance": components.appliance_kwargs(s, spec.appliance_image),
    }
    kwargs["appliance"]["command"] = ["--state-dir", str(s.state_dir), "serve"]
    afters = {"registry": [], "router": [], "appliance": ["deis-registry.service", "deis-router.service"]}
    units = []
    for name, kw in kwargs.items():
        content = env.get_template("component.service.j2").render(
            description=systemd.specifiers(f"Deis {name} (platform component)"),
            afters=["etcd2.service", *afters[name]],
            remove=systemd.exec_line([DOCKER, "rm", "-f", kw["name"]]),
            start=systemd.exec_line(docker_run_argv(kw)),
            stop=systemd.exec_line([DOCKER, "stop", kw["name"]]),
        )
        units.append(_unit(f"deis-{name}.service", content))
    return units


def engine_units(spec: NodeSpec, env: jinja2.Environment) -> list[dict[str, Any]]:
    if spec.engine == "fleet":
        return [_unit("fleet.service")]
    environment = []
    if spec.swarm_manager:
        start = systemd.exec_line([DOCKER, "swarm", "join", "--token", spec.swarm_token, spec.swarm_manager])
        description = f"Join the swarm at {spec.swarm_manager}"
    else:
        # coreos-cloudinit replaces $private_ipv4 in the text; exec_line would escape its `$`, so the
        # address goes through an Environment= line (no `$` expansion there) into `${...}`.
        environment.append(systemd.environment("DEIS_ADVERTISE_ADDR", PRIVATE_IP))
        start = systemd.exec_line([DOCKER, "swarm", "init", "--advertise-addr"]) + " ${DEIS_ADVERTISE_ADDR}"
        description = "Start a swarm on this node (its first manager)"
    # The swarm scheduler's app network takes its per-node settings (inter-container traffic off) from
    # a config-only network each node must have before a task lands there ("-": it may exist already).
    config = swarmspec.network_specs(str(spec.settings.state_dir))[0]
    make_config = dockercli.network_create(
        config["Name"], config["Options"], config["Labels"], config_only=True
    )
    content = env.get_template("swarm.service.j2").render(
        description=systemd.specifiers(description),
        start=start,
        environment=environment,
        after=["-" + systemd.exec_line([DOCKER, *make_config[1:]])],
    )
    return [_unit("deis-swarm.service", content)]


def docker_opts(spec: NodeSpec) -> str:
    opts = [f"--insecure-registry={registry_of(spec)}", f"--label=deis.role={spec.role}"]
    opts += [f"--label={key}={value}" for key, value in spec.metadata]
    return systemd.environment("DOCKER_OPTS", " ".join(opts))


def render(spec: NodeSpec) -> str:
    check(spec)
    env = _env(spec)
    dropin = env.get_template("docker-registry.conf.j2").render(docker_opts=docker_opts(spec))
    units: list[dict[str, Any]] = [
        _unit("etcd2.service"),
        _unit("docker.service", dropins=({"name": "50-deis.conf", "content": dropin},)),
        *engine_units(spec, env),
    ]
    write_files = []
    if spec.role == "control":
        units += component_units(spec, env)
        path = str(services.registry_config_path(spec.settings))
        write_files.append({"path": path, "permissions": "0644", "content": registry_config(spec)})
    metadata = ",".join(f"{k}={v}" for k, v in (("role", spec.role), *spec.metadata))
    return env.get_template("user-data.yml.j2").render(
        node=spec, etcd=etcd_options(spec), fleet_metadata=metadata, units=units, write_files=write_files
    )
