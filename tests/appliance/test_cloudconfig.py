"""`deis cloud-config`: the YAML parses, declares the expected units per role and engine, and every unit
it carries passes `systemd-analyze verify`."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance import cloudconfig
from appliance.components import DEFAULT_STATE_DIR
from core.errors import ValidationError
from gitserver import admin
from scheduler import swarmspec
from tests.unitverify import verify

PEERS = "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380"
TOKEN = "SWMTKN-1-abc123"


def spec(role: str, engine: str, **kw: Any) -> cloudconfig.NodeSpec:
    if role == "worker":
        kw.setdefault("etcd_peers", cloudconfig.parse_peers(PEERS))
        kw.setdefault("registry", "10.0.0.1:5000")
        if engine == "swarm":
            kw.setdefault("swarm_manager", "10.0.0.1:2377")
            kw.setdefault("swarm_token", TOKEN)
    return cloudconfig.NodeSpec(name="node-1", role=role, engine=engine, **kw)


def parsed(s: cloudconfig.NodeSpec) -> dict[str, Any]:
    text = cloudconfig.render(s)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def units(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in doc["coreos"]["units"]}


EXPECTED = {
    ("control", "fleet"): ["etcd2.service", "docker.service", "fleet.service", "deis-registry.service",
                           "deis-router.service", "deis-appliance.service"],
    ("control", "swarm"): ["etcd2.service", "docker.service", "deis-swarm.service", "deis-registry.service",
                           "deis-router.service", "deis-appliance.service"],
    ("worker", "fleet"): ["etcd2.service", "docker.service", "fleet.service"],
    ("worker", "swarm"): ["etcd2.service", "docker.service", "deis-swarm.service"],
}  # fmt: skip


@pytest.mark.parametrize(("role", "engine"), sorted(EXPECTED))
def test_units_per_role_and_engine_and_systemd_accepts_them(role: str, engine: str, tmp_path: Path) -> None:
    doc = parsed(spec(role, engine, metadata=(("region", "eu-1"),)))
    found = units(doc)
    assert list(found) == EXPECTED[role, engine]
    assert all(u["command"] == "start" for u in found.values())
    dropin = found["docker.service"]["drop-ins"][0]
    registry = "$private_ipv4:5000" if role == "control" else "10.0.0.1:5000"
    assert dropin["name"] == "50-deis.conf"
    opts = f"--insecure-registry={registry} --label=deis.role={role} --label=region=eu-1"
    assert f'Environment="DOCKER_OPTS={opts}"' in dropin["content"]
    verify(
        tmp_path, "dropin.service", dropin["content"].replace("[Service]", "[Service]\nExecStart=/bin/true")
    )
    for name, unit in found.items():
        if unit.get("content"):
            assert unit["enable"] is True
            verify(tmp_path, name, unit["content"])
    assert ("fleet" in doc["coreos"]) == (engine == "fleet")
    if engine == "fleet":
        assert doc["coreos"]["fleet"]["metadata"] == f"role={role},region=eu-1"
    assert ("write_files" in doc) == (role == "control")


def test_control_is_an_etcd_member_and_worker_a_proxy() -> None:
    control = parsed(spec("control", "fleet"))["coreos"]["etcd2"]
    assert control["name"] == "node-1"
    assert control["initial-cluster"] == "node-1=http://$private_ipv4:2380"
    assert control["listen-peer-urls"] == "http://$private_ipv4:2380"
    assert "proxy" not in control
    worker = parsed(spec("worker", "fleet"))["coreos"]["etcd2"]
    assert worker == {
        "name": "node-1",
        "proxy": "on",
        "listen-client-urls": "http://127.0.0.1:2379",
        "initial-cluster": PEERS,
    }


def test_every_swarm_node_gets_the_app_networks_settings() -> None:
    """The swarm scheduler's app network is made --config-from a config-only network on each node."""
    for role in ("control", "worker"):
        unit = units(parsed(spec(role, "swarm")))["deis-swarm.service"]["content"]
        [line] = [ln for ln in unit.splitlines() if ln.startswith("ExecStartPost=")]
        assert line.startswith("ExecStartPost=-/usr/bin/docker network create --config-only ")
        assert "--opt com.docker.network.bridge.enable_icc=false" in line
        assert line.endswith(swarmspec.network_specs(str(DEFAULT_STATE_DIR))[0]["Name"])


def test_swarm_init_on_the_first_control_node_and_join_elsewhere() -> None:
    init = units(parsed(spec("control", "swarm")))["deis-swarm.service"]["content"]
    assert 'Environment="DEIS_ADVERTISE_ADDR=$private_ipv4"' in init
    assert "ExecStart=/usr/bin/docker swarm init --advertise-addr ${DEIS_ADVERTISE_ADDR}\n" in init
    assert "ConditionPathExists=!/var/lib/docker/swarm/state.json" in init
    join = units(parsed(spec("worker", "swarm")))["deis-swarm.service"]["content"]
    assert f"ExecStart=/usr/bin/docker swarm join --token {TOKEN} 10.0.0.1:2377\n" in join


def test_component_units_run_the_components_containers() -> None:
    found = units(parsed(spec("control", "fleet")))
    router = found["deis-router.service"]["content"]
    assert "ExecStartPre=-/usr/bin/docker rm -f deis-router\n" in router
    assert "ExecStop=/usr/bin/docker stop deis-router\n" in router
    assert "SuccessExitStatus=143\n" in router
    start = next(line for line in router.splitlines() if line.startswith("ExecStart="))
    assert start.startswith(
        "ExecStart=/usr/bin/docker run --rm --name deis-router --init --network host --pid host"
    )
    assert start.endswith('deis/router:bookworm /usr/sbin/nginx -c /var/lib/deis/nginx/nginx.conf '
                          '-p /var/lib/deis/nginx/ -g "daemon off;"')  # fmt: skip
    appliance = found["deis-appliance.service"]["content"]
    assert "deis/appliance:latest --state-dir /var/lib/deis serve\n" in appliance
    assert "After=docker.service etcd2.service deis-registry.service deis-router.service" in appliance
    files = parsed(spec("control", "fleet"))["write_files"]
    assert files[0]["path"] == "/var/lib/deis/registry/config.yml"
    assert "addr: :5000\n" in files[0]["content"]  # workers pull from it over the private network


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "Bad_Name"}, "node names"),
        ({"role": "worker", "registry": "10.0.0.1:5000"}, "--etcd-peers"),
        ({"role": "worker", "etcd_peers": (("n1", "http://10.0.0.1:2380"),)}, "--registry"),
        ({"engine": "swarm", "swarm_manager": "10.0.0.1:2377"}, "go together"),
        ({"engine": "swarm", "swarm_manager": "10.0.0.1:2377", "swarm_token": "x\ny"}, "SWMTKN"),
        ({"registry": "a b:5000"}, "HOST:PORT"),
        ({"appliance_image": "x\n  evil: 1"}, "image reference"),
    ],
)
def test_bad_input_is_refused_in_one_line(kw: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"name": "node-1", "role": "control", "engine": "fleet"}
    with pytest.raises(ValidationError, match=message):
        cloudconfig.render(cloudconfig.NodeSpec(**(base | kw)))


def test_parsers_refuse_what_would_break_the_formats() -> None:
    with pytest.raises(ValidationError):
        cloudconfig.parse_peers("n1=http://10.0.0.1:2380,evil")
    with pytest.raises(ValidationError):
        cloudconfig.parse_metadata(["a=b,c=d"])
    assert cloudconfig.parse_metadata(["disk=ssd"]) == (("disk", "ssd"),)


def test_the_deis_command_prints_it(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = ["--state-dir", str(tmp_path), "cloud-config", "w1", "--role", "worker", "--engine", "fleet",
            "--etcd-peers", PEERS, "--registry", "10.0.0.1:5000", "--metadata", "disk=ssd"]  # fmt: skip
    with redirect_stdout(out):
        assert admin.main(argv) == 0
    doc = yaml.safe_load(out.getvalue())
    assert doc["hostname"] == "w1"
    assert doc["coreos"]["fleet"]["metadata"] == "role=worker,disk=ssd"
    with redirect_stdout(io.StringIO()) as err:
        assert admin.main(["--state-dir", str(tmp_path), "cloud-config", "w1", "--role", "worker",
                           "--engine", "fleet"]) == 1  # fmt: skip
    assert "--etcd-peers" in err.getvalue()
