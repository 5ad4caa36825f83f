"""The swarm backend's pure shapes: the service an instance is, and how its tasks read."""

from __future__ import annotations

from core.names import ContainerName
from scheduler import swarmlogs, swarmspec
from scheduler.base import LogLine, ProcessSpec

SPEC = ProcessSpec(
    name=ContainerName("shop", 4, "web", 2),
    image="127.0.0.1:5000/shop:v4",
    command=["/bin/sh", "-c", "gunicorn app:app"],
    env={"PORT": "5000", "ODD": "a 'b' $(c)\nline2"},
    port=5000,
    memory=256 * 2**20,
    pids_limit=512,
    networks=("deis-svc-db",),
    mounts=(("/var/lib/deis/volumes/shop/data", "/data"),),
    placement=(("region", "eu"),),
)


def test_an_instance_is_one_confined_service_published_in_host_mode() -> None:
    body = swarmspec.service_spec(
        SPEC, "/var/lib/deis", "shop-v4-web-2-abcd", networks=["apps", "deis-svc-db"]
    )
    task = body["TaskTemplate"]
    container = task["ContainerSpec"]
    assert body["Name"] == "shop-v4-web-2-abcd"
    assert body["Labels"]["io.deis.name"] == "shop_v4.web.2"
    assert body["Labels"]["io.deis.platform"] == "/var/lib/deis"
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    assert container["Env"] == ["PORT=5000", "ODD=a 'b' $(c)\nline2"]  # kept exactly, one each
    assert container["Command"] == ["/bin/sh", "-c", "gunicorn app:app"]
    assert container["Labels"] == {"io.deis.swarm.platform": "/var/lib/deis", "io.deis.app": "shop"}
    assert "io.deis.platform" not in container["Labels"]  # the docker backend must not take it for its own
    assert container["CapabilityDrop"] == ["CAP_NET_RAW", "CAP_MKNOD", "CAP_SETFCAP", "CAP_AUDIT_WRITE"]
    assert container["Mounts"] == [
        {"Type": "bind", "Source": "/var/lib/deis/volumes/shop/data", "Target": "/data", "ReadOnly": False}
    ]
    assert task["Resources"] == {"Limits": {"MemoryBytes": 256 * 2**20, "Pids": 512}}
    assert task["Placement"] == {"Constraints": ["node.labels.region==eu"]}
    assert task["RestartPolicy"]["Condition"] == "any"
    assert task["Networks"] == [{"Target": "apps"}, {"Target": "deis-svc-db"}]
    assert body["EndpointSpec"] == {
        "Mode": "dnsrr",
        "Ports": [{"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "host"}],
    }


def test_a_one_off_never_restarts_and_publishes_nothing() -> None:
    body = swarmspec.service_spec(SPEC, "/p", "x", one_off=True)
    assert body["TaskTemplate"]["RestartPolicy"] == {"Condition": "none"}
    assert "EndpointSpec" not in body


def service(replicas: int = 1) -> dict:
    spec = swarmspec.service_spec(SPEC, "/p", "x")
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    return {"ID": "svc1", "Spec": spec, "CreatedAt": "2026-12-03T10:00:00Z"}


def task(
    state: str, index: int, desired: str = "running", port: int | None = 31000, **status: object
) -> dict:
    ports = {"Ports": [{"PublishedPort": port, "TargetPort": 5000}]} if port else {}
    return {
        "ID": f"t{index}",
        "Slot": 1,
        "NodeID": "n1",
        "DesiredState": desired,
        "Version": {"Index": index},
        "Status": {"State": state, "Timestamp": "2026-12-03T10:00:05.5Z", "PortStatus": ports, **status},
    }


NODES = {"n1": ("10.0.0.5", "worker-1")}


def test_the_current_task_speaks_for_the_instance() -> None:
    crashed = task("failed", 10, desired="shutdown", port=None)
    inst = swarmspec.instance(service(), [crashed, task("running", 12)], NODES)
    assert inst is not None
    assert (str(inst.name), inst.id, inst.state) == ("shop_v4.web.2", "svc1", "running")
    assert (inst.endpoint, inst.port, inst.node, inst.restarts) == ("10.0.0.5:31000", 5000, "worker-1", 1)
    assert inst.started == 1796292005.5


def test_states_of_tasks_waiting_ending_and_gone() -> None:
    assert swarmspec.instance(service(), [task("preparing", 3, port=None)], NODES).state == "created"  # type: ignore[union-attr]
    assert swarmspec.instance(service(), [], NODES).state == "created"  # type: ignore[union-attr]
    assert swarmspec.instance(service(0), [], NODES).state == "exited"  # type: ignore[union-attr]
    ended = swarmspec.instance(service(), [task("complete", 4, desired="shutdown")], NODES)
    assert ended is not None and ended.state == "exited" and ended.started == 0.0


def test_a_one_offs_exit_status() -> None:
    assert swarmspec.exit_code(task("running", 1)) is None
    assert swarmspec.exit_code(task("failed", 1, ContainerStatus={"ExitCode": 3})) == 3
    assert swarmspec.exit_code(task("complete", 1, ContainerStatus={"ExitCode": 0})) == 0
    assert swarmspec.exit_code(task("shutdown", 1, ContainerStatus={"ExitCode": 0})) == 143  # stopped


def test_the_swarm_network_takes_its_settings_from_a_config_network() -> None:
    config, network = swarmspec.network_specs("/p")
    assert config["ConfigOnly"] and config["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert len(config["Options"]["com.docker.network.bridge.name"]) <= 15
    assert network["Scope"] == "swarm" and network["ConfigFrom"] == {"Network": config["Name"]}
    assert "Labels" not in network and "Options" not in network  # refused beside ConfigFrom


def test_lines_a_stream_had_not_delivered_when_its_service_stopped() -> None:
    lines = [LogLine(1.0, "a"), LogLine(2.0, "b"), LogLine(2.0, "c"), LogLine(3.0, "d")]
    assert swarmlogs.after(lines, LogLine(2.0, "b"), None) == lines[2:]
    assert swarmlogs.after(lines, None, 2.0) == lines[1:]
    assert swarmlogs.after(lines, LogLine(2.5, "gone from the record"), None) == lines[3:]
    assert swarmlogs.selected(lines, tail=2, since=None) == lines[2:]
    assert swarmlogs.selected(lines, tail=0, since=None) == []
    assert swarmlogs.selected(lines, tail=None, since=3.0) == lines[3:]


def test_only_a_swarm_manager_runs_the_swarm_backend() -> None:
    from scheduler.swarm import not_a_manager

    assert "docker swarm init" in (not_a_manager({"Swarm": {"LocalNodeState": "inactive"}}) or "")
    assert "worker" in (
        not_a_manager({"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}}) or ""
    )
    assert not_a_manager({"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}) is None


def test_a_task_containers_events_are_its_services() -> None:
    from scheduler.dockerevents import parse_event

    raw = {
        "Action": "die",
        "timeNano": 1796292005500000000,
        "Actor": {"ID": "c0ffee", "Attributes": {"io.deis.app": "shop", swarmspec.LABEL_SERVICE_ID: "svc1"}},
    }
    event = parse_event(raw, swarmspec.LABEL_SERVICE_ID)
    assert event is not None and (event.app, event.id, event.action) == ("shop", "svc1", "die")
    assert parse_event(raw) is not None and parse_event(raw).id == "c0ffee"  # type: ignore[union-attr]
    del raw["Actor"]["Attributes"][swarmspec.LABEL_SERVICE_ID]  # type: ignore[index]
    assert parse_event(raw, swarmspec.LABEL_SERVICE_ID) is None  # not a task: not ours
