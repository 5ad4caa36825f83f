"""Fleet units for app instances, in Deis v1's shape (pure: from a ProcessSpec to unit text and to the
option list fleet's API takes).

One unit per instance, `APP_vN.TYPE.NUM.service` (`APP_vN.TYPE.NUM.ID.service` beside a running one):
    Environment=      the app's config; `docker run -e KEY` (no value) passes each on from the docker
                      CLI's environment, so values never reach a command line (/proc/PID/cmdline)
    ExecStartPre      pull from the platform registry, then `docker rm -f` of a leftover container
    ExecStart         `docker run --rm --name ... --init`, limits and confinement as the docker backend's
    ExecStop          `docker stop -t GRACE` (without it a DELETE leaves the container running)
    SuccessExitStatus=143, Restart=on-failure, TimeoutStartSec
    [X-Fleet]         one MachineMetadata=KEY=VALUE per app tag (fleet ORs values of one key)
    [X-Deis]          the host port the router reaches and the app's $PORT (systemd ignores X- sections;
                      fleet keeps them with the unit, so `instances` reads them back)
Every value passes core.systemd: `%`, `$`, quotes and newlines round-trip exactly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2

from core import systemd
from core.errors import ValidationError
from core.names import ContainerName
from scheduler.base import ProcessSpec

TEMPLATES: Final = Path(__file__).parent / "templates"
DOCKER: Final = "/usr/bin/docker"
START_TIMEOUT: Final = "20m"
CAP_DROP: Final = ("NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE")  # as scheduler.docker.CAP_DROP
PORT_RANGE: Final = (20000, 40000)
_META = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_UNIT = re.compile(
    r"(?P<base>[a-z][a-z0-9-]*_v[0-9]+\.[A-Za-z0-9-]+\.[0-9]+)(?:\.(?P<id>[0-9a-f]{8}))?\.service"
)
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # not HTML: every value is escaped for systemd by core.systemd
)


def unit_name(name: ContainerName, suffix: str = "") -> str:
    return f"{name}.{suffix}.service" if suffix else f"{name}.service"


def container_of(unit: str) -> str:
    return unit.removesuffix(".service")


def process_of(unit: str) -> ContainerName | None:
    m = _UNIT.fullmatch(unit)
    return ContainerName.parse(m["base"]) if m else None


def host_port(unit: str) -> int:
    """A host port for the unit's container, fixed by its name (so a restart keeps it). Two units on one
    machine may collide (1 in 20,000): fleet then shows that unit failed and the rollout replaces it."""
    low, high = PORT_RANGE
    return low + int(hashlib.sha256(unit.encode()).hexdigest()[:8], 16) % (high - low)


def metadata_lines(tags: Mapping[str, str]) -> list[str]:
    for key, value in tags.items():
        if not (_META.fullmatch(key) and _META.fullmatch(value)):
            raise ValidationError(
                f"fleet metadata is letters, digits and ._- only: cannot use tag {key}={value}"
            )
    return [f"{key}={value}" for key, value in sorted(tags.items())]


def run_argv(spec: ProcessSpec, container: str, port: int) -> list[str]:
    """The instance's `docker run` (pure). Env values stay out of it: `-e KEY` takes them from the
    unit's Environment= lines."""
    argv = [DOCKER, "run", "--rm", "--name", container, "--init"]
    argv += ["--label", f"io.deis.app={spec.name.app}", "--label", f"io.deis.unit={container}.service"]
    for cap in CAP_DROP:
        argv += ["--cap-drop", cap]
    argv += ["--security-opt", "no-new-privileges"]
    if spec.memory:
        argv += ["--memory", f"{spec.memory}b"]
    if spec.cpu_shares:
        argv += ["--cpu-shares", str(spec.cpu_shares)]
    if spec.pids_limit:
        argv += ["--pids-limit", str(spec.pids_limit)]
    for host, inside in spec.mounts:
        argv += ["-v", f"{host}:{inside}:rw"]
    if spec.port is not None:
        argv += ["-p", f"{port}:{spec.port}"]
    for key in sorted(spec.env):
        argv += ["-e", key]
    return [*argv, spec.image, *(spec.command or [])]


def render(
    spec: ProcessSpec, unit: str, *, tags: Mapping[str, str] | None = None, grace: float = 10.0
) -> str:
    """The unit file text for one instance of `spec` named `unit`."""
    container = container_of(unit)
    port = host_port(unit)
    return _ENV.get_template("instance.service.j2").render(
        description=systemd.specifiers(f"{container} (deis app instance)"),
        environment=[systemd.environment(key, value) for key, value in sorted(spec.env.items())],
        start_timeout=START_TIMEOUT,
        pull=systemd.exec_line([DOCKER, "pull", spec.image]),
        remove=systemd.exec_line([DOCKER, "rm", "-f", container]),
        run=systemd.exec_line(run_argv(spec, container, port)),
        stop=systemd.exec_line([DOCKER, "stop", "-t", str(int(grace)), container]),
        stop_timeout=int(grace) + 10,
        metadata=metadata_lines(tags or {}),
        host_port=port if spec.port is not None else "",
        port=spec.port if spec.port is not None else "",
    )


def options(text: str) -> list[dict[str, str]]:
    """A unit file as fleet's API options (`[{"section", "name", "value"}]`), in order; fleet writes
    each back as `name=value` under its section, so values keep systemd's escaping."""
    out: list[dict[str, str]] = []
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        name, sep, value = line.partition("=")
        if not sep or not section:
            raise ValidationError(f"not a unit file line: {line!r}")
        out.append({"section": section, "name": name.strip(), "value": value})
    return out


def option(opts: list[dict[str, str]], section: str, name: str) -> str | None:
    found = [o["value"] for o in opts if o.get("section") == section and o.get("name") == name]
    return found[-1] if found else None
