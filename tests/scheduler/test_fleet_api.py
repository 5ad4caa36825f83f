"""The fleet backend against a fake fleetd on a unix socket (tests/scheduler/fakefleet.py answers as
../shared/FACTS.md says a real one does): the exact request sequences of start, stop and instances."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import DeployError, ServiceError
from core.names import ContainerName
from scheduler import fleetunits
from scheduler.base import ProcessSpec, Stdio
from scheduler.fleet import FleetBackend
from scheduler.fleetapi import FleetClient
from tests.scheduler.fakefleet import FakeFleet


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    with tempfile.TemporaryDirectory() as tmp, FakeFleet(Path(tmp) / "fleet.sock") as fake:  # short path
        yield fake


def backend(fake: FakeFleet, **kw: object) -> FleetBackend:
    return FleetBackend(f"unix://{fake.path}", registry="10.0.0.1:5000", poll=0.01, **kw)  # type: ignore[arg-type]


def spec(num: int = 1, app: str = "myapp") -> ProcessSpec:
    return ProcessSpec(
        name=ContainerName(app, 2, "web", num),
        image="127.0.0.1:5000/myapp:v2",
        command=None,
        env={"PORT": "5000", "SECRET": 'a "b" %n $X'},
        port=5000,
    )


def paths(fake: FakeFleet) -> list[str]:
    return [f"{method} {path}" for method, path, _ in fake.requests]


def test_start_puts_the_unit_launched_and_polls_state_until_it_runs(fleet: FakeFleet) -> None:
    fleet.launch_polls = 2
    tags = {"myapp": {"region": "eu"}}
    inst = backend(fleet, tags=lambda app: tags[app]).start(spec())
    unit = "myapp_v2.web.1.service"
    assert paths(fleet) == [
        "GET /fleet/v1/units",  # is the name free?
        f"PUT /fleet/v1/units/{unit}",
        *["GET /fleet/v1/state", "GET /fleet/v1/machines", "GET /fleet/v1/machines?nextPageToken=2",
          "GET /fleet/v1/units"] * 3,
    ]  # fmt: skip
    body = fleet.requests[1][2]
    assert body["desiredState"] == "launched"
    expected = fleetunits.options(
        fleetunits.render(
            ProcessSpec(**{**spec().__dict__, "image": "10.0.0.1:5000/myapp:v2"}), unit, tags={"region": "eu"}
        )
    )
    assert body["options"] == expected
    assert {"section": "X-Fleet", "name": "MachineMetadata", "value": "region=eu"} in body["options"]
    assert {"section": "Service", "name": "Environment", "value": '"SECRET=a \\"b\\" %%n $X"'} in body[
        "options"
    ]
    port = fleetunits.host_port(unit)
    assert inst.id == unit and inst.running and inst.node == "10.0.0.1"
    assert inst.endpoint == f"10.0.0.1:{port}" and inst.port == 5000


def test_a_second_start_of_a_name_runs_beside_the_first(fleet: FakeFleet) -> None:
    b = backend(fleet)
    first, second = b.start(spec()), b.start(spec())
    assert first.id == "myapp_v2.web.1.service"
    assert second.id != first.id and second.id.startswith("myapp_v2.web.1.") and second.name == first.name
    assert [i.id for i in b.instances("myapp")] == sorted([first.id, second.id])


def test_stop_sets_inactive_then_deletes_every_unit_of_the_name(fleet: FakeFleet) -> None:
    removed: list[str] = []
    b = backend(fleet)
    b.removing = removed.append
    ids = [b.start(spec()).id, b.start(spec()).id, b.start(spec(2)).id]
    fleet.requests.clear()
    b.stop("myapp_v2.web.1", grace=5)
    writes = [(m, p, body) for m, p, body in fleet.requests if m != "GET"]
    assert writes == [
        ("PUT", f"/fleet/v1/units/{ids[0]}", {"desiredState": "inactive"}),
        ("DELETE", f"/fleet/v1/units/{ids[0]}", None),
        ("PUT", f"/fleet/v1/units/{ids[1]}", {"desiredState": "inactive"}),
        ("DELETE", f"/fleet/v1/units/{ids[1]}", None),
    ]
    assert removed == ids[:2]
    assert [i.id for i in b.instances()] == [ids[2]]
    b.stop("myapp_v2.web.9", grace=5)  # a missing one is not an error


def test_instances_reads_every_page_and_skips_foreign_units(fleet: FakeFleet) -> None:
    b = backend(fleet)
    for num in range(1, 5):
        b.start(spec(num))
    b.start(spec(1, app="other"))
    fleet.units["etcd-backup.service"] = {"name": "etcd-backup.service", "options": [], "machineID": "m1",
                                          "desiredState": "launched", "currentState": "launched"}  # fmt: skip
    fleet.polls["etcd-backup.service"] = 0
    fleet.requests.clear()
    mine = b.instances("myapp")
    assert [str(i.name) for i in mine] == [f"myapp_v2.web.{n}" for n in range(1, 5)]
    assert {i.node for i in mine} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert paths(fleet) == [
        "GET /fleet/v1/state", "GET /fleet/v1/state?nextPageToken=2", "GET /fleet/v1/state?nextPageToken=4",
        "GET /fleet/v1/machines", "GET /fleet/v1/machines?nextPageToken=2",
        "GET /fleet/v1/units", "GET /fleet/v1/units?nextPageToken=2", "GET /fleet/v1/units?nextPageToken=4",
    ]  # fmt: skip
    assert len(b.instances()) == 5


def test_a_unit_that_never_launches_is_a_clear_error(fleet: FakeFleet) -> None:
    fleet.launch_polls = 10**6
    with pytest.raises(
        DeployError, match=r"fleet did not launch myapp_v2.web.1.service within 0s \(state created\)"
    ):
        backend(fleet, launch_timeout=0.05).start(spec())
    fleet.fail = {"myapp_v2.web.2.service"}
    fleet.launch_polls = 0
    with pytest.raises(DeployError, match=r"myapp_v2\.web\.2\.service failed on 10\.0\.0\.2"):
        backend(fleet).start(spec(2))


def test_what_fleet_cannot_do_says_so(fleet: FakeFleet) -> None:
    b = backend(fleet)
    for call in (lambda: b.logs("x"), b.events, lambda: b.run_attached(spec(), Stdio(None, 1, 2))):
        with pytest.raises(ServiceError, match="fleet"):
            call()
    assert b.usage([]) == {}
    assert [m["primaryIP"] for m in b.nodes()] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_client_errors_are_service_errors(tmp_path: Path, fleet: FakeFleet) -> None:
    with pytest.raises(ServiceError, match="does not answer"):
        FleetClient(f"unix://{tmp_path}/none.sock").units()
    with pytest.raises(ServiceError, match="unix:///PATH or http://HOST:PORT"):
        FleetClient("ftp://x")
    client = FleetClient(f"unix://{fleet.path}")
    with pytest.raises(ServiceError, match=r"HTTP 404\): unit does not exist and options field empty"):
        client.put_unit("nope.service", "launched")
    assert client.delete_unit("nope.service") is False
