"""The fleet backend, the seed's engine: one fleet unit per instance (scheduler.fleetunits renders it),
submitted through fleet's HTTP API (scheduler.fleetapi), states polled until launched, units set
inactive and destroyed on stop. Not an operator choice yet (`scheduler.CHOICES`): nothing wires it.

It was checked against rendered units (`systemd-analyze verify`) and against a fake API answering as a
real fleetd did (../shared/FACTS.md), not against a live fleet cluster.

What fleet cannot do, and what this backend does instead:
    probe         a TCP connect to NODE:HOSTPORT (the published port; docker-proxy may accept it before
                  the app listens, so health checks over HTTP are the honest ones here)
    logs, run_attached, events
                  fleet's API has neither output nor a one-off nor an event stream: ServiceError, naming
                  the limit (the unit's journal is on its machine: `journalctl -u UNIT`)
    usage         fleet reports no CPU or memory: no figures (an empty answer)
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from core.errors import DeployError, ServiceError
from scheduler import fleetunits
from scheduler.base import Backend, EventStream, Instance, LogStream, ProcessSpec, Stdio, Usage
from scheduler.fleetapi import DEFAULT_ENDPOINT, FleetClient

LAUNCH_TIMEOUT = 120.0  # the first pull of an image on a machine counts (FACTS: 3 to 6 s when cached)
POLL = 0.5
_STATES = {"running": "running", "auto-restart": "restarting", "start-pre": "created", "start": "created"}


def instance_state(unit: dict[str, Any], state: dict[str, Any] | None) -> str:
    """The Backend's state word for a unit, from systemd's states as fleet reports them."""
    if state is None:
        return "created" if unit.get("currentState") != "inactive" else "exited"
    active, sub = state.get("systemdActiveState"), state.get("systemdSubState")
    if active == "active" and sub == "running":
        return "running"
    if active == "failed":
        return "dead"
    if active in ("inactive", "deactivating"):
        return "exited"
    return _STATES.get(str(sub), "created")


class FleetBackend(Backend):
    name: ClassVar[str] = "fleet"

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        registry: str | None = None,
        tags: Callable[[str], Mapping[str, str]] | None = None,
        launch_timeout: float = LAUNCH_TIMEOUT,
        poll: float = POLL,
        grace: float = 10.0,
        client: FleetClient | None = None,
    ) -> None:
        """`registry`: the platform registry's address as the machines reach it (HOST:PORT), which
        replaces the loopback one in image names; `tags(app)`: the app's tags (MachineMetadata); `grace`:
        the `docker stop -t` written into each unit (a unit's ExecStop is fixed when it is submitted, so
        `stop(ref, grace)` can only wait that long, not change it)."""
        self.client = client or FleetClient(endpoint)
        self.registry = registry
        self.tags = tags or (lambda app: {})
        self.launch_timeout = launch_timeout
        self.poll = poll
        self.grace = grace
        self._lock = threading.Lock()

    def _image(self, image: str) -> str:
        host, sep, rest = image.partition("/")
        if self.registry and sep and host.startswith(("127.0.0.1:", "localhost:")):
            return f"{self.registry}/{rest}"
        return image

    def _free_unit(self, spec: ProcessSpec) -> str:
        """`NAME.service`, or beside a unit of that name `NAME.ID.service` (two may share a name)."""
        taken = {u.get("name") for u in self.client.units()}
        unit = fleetunits.unit_name(spec.name)
        while unit in taken:
            unit = fleetunits.unit_name(spec.name, secrets.token_hex(4))
        return unit

    def start(self, spec: ProcessSpec) -> Instance:
        spec = replace(spec, image=self._image(spec.image))
        with self._lock:  # two starts of one name must not pick the same unit
            unit = self._free_unit(spec)
            text = fleetunits.render(spec, unit, tags=self.tags(spec.name.app), grace=self.grace)
            self.client.put_unit(unit, "launched", fleetunits.options(text))
        return self._wait_launched(unit)

    def _wait_launched(self, unit: str) -> Instance:
        deadline = time.monotonic() + self.launch_timeout
        while True:
            found = self._find(unit)
            if found is not None and found.running:
                return found
            if found is not None and found.state == "dead":
                raise DeployError(f"{unit} failed on {found.node or 'its machine'} (journalctl -u {unit})")
            if time.monotonic() > deadline:
                where = f" (state {found.state})" if found else ""
                raise DeployError(f"fleet did not launch {unit} within {self.launch_timeout:.0f}s{where}")
            time.sleep(self.poll)

    def _find(self, unit: str) -> Instance | None:
        return next((i for i in self._all() if i.id == unit), None)

    def stop(self, ref: str, grace: float) -> None:
        units = [u["name"] for u in self.client.units() if ref in (u.get("name"), _base(u))]
        for unit in units:
            self.client.put_unit(unit, "inactive")  # ExecStop: `docker stop`, then the unit ends
            self._wait_stopped(unit, max(grace, self.grace) + 10.0)
            if self.removing is not None:
                self.removing(unit)
            self.client.delete_unit(unit)

    def _wait_stopped(self, unit: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._find(unit)
            if found is None or not found.running:
                return
            time.sleep(self.poll)

    def _all(self) -> list[Instance]:
        states = {s.get("name"): s for s in self.client.states()}
        machines = {m.get("id"): m for m in self.client.machines()}
        found = []
        for unit in self.client.units():
            name = fleetunits.process_of(str(unit.get("name")))
            if name is None:
                continue  # not an app instance of this platform (another tenant of the cluster)
            state = states.get(unit["name"])
            machine = machines.get((state or unit).get("machineID"), {})
            node = str(machine.get("primaryIP") or "")
            opts = unit.get("options") or []
            port, host_port = (
                fleetunits.option(opts, "X-Deis", "Port"),
                fleetunits.option(opts, "X-Deis", "HostPort"),
            )
            found.append(
                Instance(
                    name=name,
                    id=str(unit["name"]),
                    state=instance_state(unit, state),
                    endpoint=f"{node}:{host_port}" if node and host_port else None,
                    port=int(port) if port else None,
                    node=node or str((state or unit).get("machineID") or ""),
                )
            )
        return found

    def instances(self, app: str | None = None) -> list[Instance]:
        found = [i for i in self._all() if app is None or i.name.app == app]
        return sorted(found, key=lambda i: (str(i.name), i.id))

    def nodes(self) -> list[dict[str, Any]]:
        """fleet's machines (id, primaryIP, metadata), for `deis node`-like listings."""
        return self.client.machines()

    def probe(self, instance: Instance) -> bool:
        if not instance.endpoint:
            return False
        host, _, port = instance.endpoint.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return True
        except OSError:
            return False

    def logs(
        self, ref: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> LogStream:
        raise ServiceError("the fleet backend has no logs: fleet's API serves none (journalctl -u UNIT)")

    def run_attached(self, spec: ProcessSpec, stdio: Stdio) -> int:
        raise ServiceError("the fleet backend cannot run one-off processes: fleet's API has no attach")

    def events(self) -> EventStream:
        raise ServiceError("the fleet backend has no event stream: fleet's API has none (poll instances)")

    def usage(self, instances: list[Instance]) -> dict[str, Usage]:
        return {}  # fleet reports no CPU or memory


def _base(unit: dict[str, Any]) -> str:
    name = fleetunits.process_of(str(unit.get("name")))
    return str(name) if name else ""
