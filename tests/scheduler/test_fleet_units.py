"""The fleet backend's units: exact options, and systemd accepts them (`systemd-analyze verify`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ValidationError
from core.names import ContainerName
from scheduler import fleetunits
from scheduler.base import ProcessSpec
from tests.unitverify import verify

UNIT = "myapp_v2.web.1.service"


def spec(**kw: object) -> ProcessSpec:
    base: dict[str, object] = {
        "name": ContainerName("myapp", 2, "web", 1),
        "image": "10.0.0.1:5000/myapp:v2",
        "command": None,
        "env": {"PORT": "5000"},
        "port": 5000,
    }
    return ProcessSpec(**(base | kw))  # type: ignore[arg-type]


def test_the_unit_has_deis_v1s_shape_exactly() -> None:
    s = spec(memory=512 << 20, cpu_shares=512, pids_limit=256, env={"PORT": "5000", "A": "1"})
    port = fleetunits.host_port(UNIT)
    run = (
        "/usr/bin/docker run --rm --name myapp_v2.web.1 --init --label io.deis.app=myapp"
        " --label io.deis.unit=myapp_v2.web.1.service --cap-drop NET_RAW --cap-drop MKNOD --cap-drop SETFCAP"
        " --cap-drop AUDIT_WRITE --security-opt no-new-privileges --memory 536870912b --cpu-shares 512"
        f" --pids-limit 256 -p {port}:5000 -e A -e PORT 10.0.0.1:5000/myapp:v2"
    )
    opts = fleetunits.options(fleetunits.render(s, UNIT, tags={"region": "eu", "disk": "ssd"}, grace=30))
    assert [(o["section"], o["name"], o["value"]) for o in opts] == [
        ("Unit", "Description", "myapp_v2.web.1 (deis app instance)"),
        ("Unit", "Requires", "docker.service"),
        ("Unit", "After", "docker.service"),
        ("Service", "Environment", "A=1"),
        ("Service", "Environment", "PORT=5000"),
        ("Service", "TimeoutStartSec", "20m"),
        ("Service", "ExecStartPre", "/usr/bin/docker pull 10.0.0.1:5000/myapp:v2"),
        ("Service", "ExecStartPre", "-/usr/bin/docker rm -f myapp_v2.web.1"),
        ("Service", "ExecStart", run),
        ("Service", "ExecStop", "/usr/bin/docker stop -t 30 myapp_v2.web.1"),
        ("Service", "TimeoutStopSec", "40"),
        ("Service", "SuccessExitStatus", "143"),
        ("Service", "Restart", "on-failure"),
        ("Service", "RestartSec", "5"),
        ("X-Fleet", "MachineMetadata", "disk=ssd"),
        ("X-Fleet", "MachineMetadata", "region=eu"),
        ("X-Deis", "HostPort", str(port)),
        ("X-Deis", "Port", "5000"),
    ]


def test_config_values_stay_out_of_argv_and_are_escaped() -> None:
    value = 'it\'s 100% "$HOME"\nsecond line \\ end'
    text = fleetunits.render(spec(env={"SECRET": value}), UNIT)
    opts = fleetunits.options(text)
    assert fleetunits.option(opts, "Service", "Environment") == (
        '"SECRET=it\'s 100%% \\"$HOME\\"\\nsecond line \\\\ end"'
    )
    start = fleetunits.option(opts, "Service", "ExecStart") or ""
    assert "-e SECRET " in start and "100" not in start


def test_commands_are_quoted_for_systemd() -> None:
    s = spec(command=["python", "-c", 'print("50% $HOME")'], port=None)
    start = fleetunits.option(fleetunits.options(fleetunits.render(s, UNIT)), "Service", "ExecStart") or ""
    assert start.endswith('10.0.0.1:5000/myapp:v2 python -c "print(\\"50%% $$HOME\\")"')
    assert " -p " not in start


@pytest.mark.parametrize(
    "s",
    [
        spec(),
        spec(
            env={"PORT": "5000", "S": 'a "b" %n $X ${Y}\n\ttab \\ ;'},
            command=["sh", "-c", "echo $PORT; exit 0"],
        ),
        spec(memory=1 << 30, mounts=(("/var/lib/deis/volumes/x", "/data"),), port=None),
    ],
    ids=["plain", "tricky", "limits"],
)
def test_systemd_accepts_the_units(s: ProcessSpec, tmp_path: Path) -> None:
    verify(tmp_path, UNIT, fleetunits.render(s, UNIT, tags={"region": "eu-1"}))


def test_names_and_metadata() -> None:
    assert fleetunits.process_of("myapp_v2.web.1.0a1b2c3d.service") == ContainerName("myapp", 2, "web", 1)
    assert fleetunits.process_of("etcd.service") is None
    assert fleetunits.unit_name(ContainerName("a", 1, "web", 2), "0a1b2c3d") == "a_v1.web.2.0a1b2c3d.service"
    assert 20000 <= fleetunits.host_port(UNIT) < 40000
    with pytest.raises(ValidationError, match="fleet metadata"):
        fleetunits.metadata_lines({"region": "eu,evil=1"})
