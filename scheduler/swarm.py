"""The cluster backend on Docker Swarm mode: one service per instance (scheduler.swarmspec says why),
placed by the swarm on any node, published in host mode at a port the engine picks, reached by the
router at that node's address. The engine this talks to must be a swarm manager.

Swarm's own ways live here:
- `stop` first scales the service to zero, so its task stops (with the grace asked where the task
  runs on this node) while its output can still be read, then removes the service;
- one-offs are services that never restart; their output comes from the service's logs and their
  status from the finished task, on whatever node ran them. The swarm gives a task no stdin, so a
  one-off's input is empty, and there is no terminal for it (`run` under `ssh -t` is refused);
- events are the local engine's container events of task containers, under their service's id
  (tasks on other nodes are seen by the reconciler's regular comparison);
- a probe looks inside a task's network namespace when it runs on this node, and connects to its
  published port when it runs elsewhere (no proxy stands between there).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import socket
import threading
import time
from typing import Any, ClassVar

import docker
import docker.errors
import requests
from docker.types.daemon import CancellableStream

from core.errors import DeployError, ServiceError
from core.names import ContainerName
from scheduler import dockerstats, health, swarmlogs, swarmspec
from scheduler.base import Backend, Instance, LogLine, ProcessSpec, Stdio, Usage
from scheduler.docker import DockerBackend, connect, container_events
from scheduler.dockerevents import DockerEventStream

log = logging.getLogger("deis.scheduler")

START_TIMEOUT = 120.0  # seconds for a task to run (an image pull on a new node included)
_POLL = 0.1


def not_a_manager(info: dict[str, Any]) -> str | None:
    """Why the engine `info` (GET /info) cannot run the swarm backend, or None if it can."""
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        return "this engine is not in a swarm: run `docker swarm init --advertise-addr ADDRESS` first"
    if not swarm.get("ControlAvailable"):
        return "this engine is a swarm worker: the platform must run on a manager node"
    return None


class SwarmBackend(Backend):
    name: ClassVar[str] = "swarm"

    def __init__(
        self,
        platform: str,
        client: docker.DockerClient | None = None,
        registry_auth: DockerBackend.Auth | None = None,
    ) -> None:
        self.platform = platform
        self.registry_auth = registry_auth
        self._client = client
        self._lock = threading.Lock()
        self._node_id = ""
        self._network = ""
        self._follows: dict[str, list[swarmlogs.Follow]] = {}  # service -> its open follow streams
        self._records: dict[str, list[LogLine]] = {}  # stopping service -> its last lines

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = connect()
            return self._client

    def check(self) -> None:
        """ServiceError unless the engine is a swarm manager (what `scheduler:set swarm` asks first)."""
        try:
            why = not_a_manager(self.client.info())
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise ServiceError(f"docker is unreachable: {exc}") from exc
        if why:
            raise ServiceError(why)

    # -- the interface -----------------------------------------------------------------------
    def start(self, spec: ProcessSpec) -> Instance:
        service = self._create(spec, one_off=False)
        began = time.monotonic()
        while True:
            history = self._tasks([service]).get(service, [])
            task = swarmspec.current_task(history)
            state = swarmspec.task_state(task)
            ran = state == "running" and (spec.port is None or swarmspec.task_port(task))
            if ran or (state == "exited" and swarmspec.ran(task)):  # running, or started and crashed
                inst = self.inspect(service)
                if inst is not None:
                    return inst
            # Never started: refused (a bad image), or left pending (no node fits its placement).
            refused = [t for t in history if swarmspec.task_state(t) == "exited" and not swarmspec.ran(t)]
            status = (refused[-1] if refused else task or {}).get("Status") or {}
            waited = time.monotonic() - began
            if refused or (status.get("Err") and waited > 15) or waited > START_TIMEOUT:
                why = status.get("Err") or f"not running after {START_TIMEOUT:.0f}s"
                self.stop(service, 0)
                raise DeployError(f"could not start {spec.name}: {why}")
            time.sleep(_POLL)

    def stop(self, ref: str, grace: float) -> None:
        services = [s["ID"] for s in self._services_of(ref)]
        captures = {
            service: swarmlogs.Capture(functools.partial(service_logs, self.client, service), service)
            for service in services
        }
        for service in services:
            self._scale_to_zero(service, grace)
        for service in services:
            self._wait_stopped(service, grace + 10)
            time.sleep(0.2)  # its last lines are on their way from the node
            record = captures[service].finish()
            with self._lock:
                self._records[service] = record
                follows = self._follows.pop(service, [])
            for follow in follows:
                follow.end(record)
            try:
                if self.removing is not None:
                    self.removing(service)
                self._remove_service(service)
            finally:
                with self._lock:
                    self._records.pop(service, None)

    def instances(self, app: str | None = None) -> list[Instance]:
        services = self._ours(app)
        tasks = self._tasks([s["ID"] for s in services])
        nodes = self._nodes()
        out = [
            i
            for i in (swarmspec.instance(s, tasks.get(s["ID"], []), nodes) for s in services)
            if i is not None
        ]
        created = {s["ID"]: s.get("CreatedAt", "") for s in services}
        return sorted(
            out, key=lambda i: (i.name.app, i.name.version, i.name.type, i.name.num, created.get(i.id, ""))
        )

    def inspect(self, ref: str) -> Instance | None:
        found = self._services_of(ref)
        if not found:
            return None
        service = found[-1]
        tasks = self._tasks([service["ID"]])
        return swarmspec.instance(service, tasks.get(service["ID"], []), self._nodes())

    def probe(self, instance: Instance) -> bool:
        if instance.port is None or instance.endpoint is None:
            return False
        container = self._local_container(instance.id)
        if container is not None:
            pid = container["State"].get("Pid")
            return bool(pid) and health.port_listening(pid, instance.port)
        host, _, port = instance.endpoint.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False

    def logs(
        self, ref: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> swarmlogs.Follow | swarmlogs.Recorded:
        found = self._services_of(ref)
        if not found:
            return swarmlogs.Recorded([])
        service = found[-1]["ID"]
        with self._lock:
            record = self._records.get(service)
        if record is not None:  # stopped: its tasks and their output are gone with them
            return swarmlogs.Recorded(swarmlogs.selected(record, tail=tail, since=since))
        try:
            raw = service_logs(
                self.client, service, **swarmlogs.params(tail=tail, follow=follow, since=since)
            )
        except docker.errors.NotFound:
            return swarmlogs.Recorded([])
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not read the output of {ref}: {exc.explanation or exc}") from exc
        stream = swarmlogs.Follow(raw, since)
        if follow:
            with self._lock:
                open_ = [f for f in self._follows.get(service, []) if not f.closed]  # readers that left go
                self._follows[service] = [*open_, stream]
        return stream

    def run_attached(self, spec: ProcessSpec, stdio: Stdio) -> int:
        if stdio.tty:
            raise DeployError("the swarm scheduler gives one-offs no terminal: run it without `ssh -t`")
        service = self._create(spec, one_off=True)
        copiers = [
            swarmlogs.Copier(functools.partial(service_logs, self.client, service, **{which: True}), fd)
            for fd, which in ((stdio.stdout, "stdout"), (stdio.stderr, "stderr"))
        ]
        try:
            code = self._wait_done(service)
            for copier in copiers:
                copier.finish()
            return code
        finally:
            for copier in copiers:
                copier.close()
            self.stop(service, 0)  # its last lines are kept first (removing)

    def events(self) -> DockerEventStream:
        # A task container's events, under the id of its service (the instance).
        raw = container_events(self.client, f"{swarmspec.LABEL_TASK_PLATFORM}={self.platform}")
        return DockerEventStream(raw, id_label=swarmspec.LABEL_SERVICE_ID)

    def usage(self, instances: list[Instance]) -> dict[str, Usage]:
        """Of the instances on this node (the engine's stats are per node)."""

        def fetch(service: str) -> dict[str, Any] | None:
            container = self._local_container(service)
            if container is None:
                return None
            try:
                return dict(self.client.api.stats(container["Id"], stream=False))
            except (docker.errors.APIError, requests.exceptions.RequestException):
                return None

        return dockerstats.usage(fetch, instances)

    def network(self) -> str:
        """The platform's app network for tasks, made on first use: a swarm-scoped bridge whose
        per-node settings (inter-container traffic off, as the docker backend's) come from a local
        config-only network of the same settings. Each node needs that config network (on a node
        made from the platform's cloud-config it is; elsewhere: `docker network create --config-only
        -o com.docker.network.bridge.enable_icc=false NAME-config`); options given straight to a
        swarm-scoped network are dropped by the engine."""
        with self._lock:
            if self._network:
                return self._network
        name = swarmspec.network_name(self.platform)
        api = self.client.api
        for body in swarmspec.network_specs(self.platform):
            try:
                api._result(api._post_json(api._url("/networks/create"), data=body), True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409 and "already exists" not in str(exc.explanation or exc):
                    why = exc.explanation or exc
                    raise ServiceError(f"could not make the app network {body['Name']}: {why}") from exc
        with self._lock:
            self._network = name
        return name

    def forget_networks(self) -> None:
        """Remove the app networks (after the platform's last task went: `deis down`, tests)."""
        for spec in reversed(swarmspec.network_specs(self.platform)):
            # The engine lets go of a swarm network on each node a moment after its last task went,
            # and of the config network after that.
            deadline = time.monotonic() + 15
            while True:
                try:
                    self.client.api.remove_network(spec["Name"])
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError as exc:
                    if time.monotonic() > deadline:
                        raise ServiceError(
                            f"could not remove {spec['Name']}: {exc.explanation or exc}"
                        ) from exc
                    time.sleep(0.2)
        with self._lock:
            self._network = ""

    # -- swarm's own ways --------------------------------------------------------------------
    def _create(self, spec: ProcessSpec, *, one_off: bool) -> str:
        # Service names are unique; two instances of one process name are two services.
        name = f"{spec.name}-{secrets.token_hex(4)}".replace("_", "-").replace(".", "-")
        body = swarmspec.service_spec(
            spec, self.platform, name, one_off=one_off, networks=[self.network(), *spec.networks]
        )
        headers = {}
        auth = self.registry_auth and self.registry_auth()
        if auth:  # the nodes pull with these (the engine passes them on to the task)
            headers["X-Registry-Auth"] = docker.auth.encode_header(auth)
        try:
            url = self.client.api._url("/services/create")
            res = self.client.api._post_json(url, data=body, headers=headers)
            created = self.client.api._result(res, True)
        except docker.errors.APIError as exc:
            raise DeployError(f"could not start {spec.name}: {exc.explanation or exc}") from exc
        return str(created["ID"])

    def _ours(self, app: str | None, name: str | None = None) -> list[dict[str, Any]]:
        labels = [f"{swarmspec.LABEL_PLATFORM}={self.platform}"]
        if app is not None:
            labels.append(f"{swarmspec.LABEL_APP}={app}")
        if name is not None:
            labels.append(f"io.deis.name={name}")
        try:
            return list(self.client.api.services(filters={"label": labels}))
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker failed to list services: {exc.explanation or exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise ServiceError(f"docker is unreachable: {exc}") from exc

    def _services_of(self, ref: str) -> list[dict[str, Any]]:
        """The services `ref` means: every one of a process name (oldest first), or one id."""
        parsed = ContainerName.parse(ref)
        if parsed is not None:
            return sorted(self._ours(parsed.app, ref), key=lambda s: s.get("CreatedAt", ""))
        try:
            service = dict(self.client.api.inspect_service(ref))
        except docker.errors.APIError:  # NotFound among them
            return []
        labels = (service.get("Spec") or {}).get("Labels") or {}
        return [service] if labels.get(swarmspec.LABEL_PLATFORM) == self.platform else []

    def _tasks(self, services: list[str]) -> dict[str, list[dict[str, Any]]]:
        if not services:
            return {}
        try:
            tasks = self.client.api.tasks(filters={"service": services})
        except docker.errors.NotFound:  # one of them was removed meanwhile: ask for each
            if len(services) == 1:
                return {}
            return {k: v for service in services for k, v in self._tasks([service]).items()}
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker failed to list tasks: {exc.explanation or exc}") from exc
        out: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            if task.get("ServiceID") in services:  # the filter matches name prefixes too
                out.setdefault(task["ServiceID"], []).append(task)
        return out

    def _nodes(self) -> dict[str, tuple[str, str]]:
        try:
            nodes = self.client.api.nodes()
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker failed to list the swarm's nodes: {exc.explanation or exc}") from exc
        return {
            n["ID"]: (
                str((n.get("Status") or {}).get("Addr") or ""),
                str((n.get("Description") or {}).get("Hostname") or n["ID"][:12]),
            )
            for n in nodes
        }

    def _local_node(self) -> str:
        if not self._node_id:
            self._node_id = str((self.client.info().get("Swarm") or {}).get("NodeID") or "")
        return self._node_id

    def _local_container(self, service: str) -> dict[str, Any] | None:
        """The inspected container of the service's current task if it runs on this node."""
        task = swarmspec.current_task(self._tasks([service]).get(service, []))
        if task is None or task.get("NodeID") != self._local_node():
            return None
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        try:
            return dict(self.client.api.inspect_container(cid))
        except docker.errors.NotFound:
            return None

    def _scale_to_zero(self, service: str, grace: float) -> None:
        container = self._local_container(service)
        try:
            current = self.client.api.inspect_service(service)
            self.client.api.update_service(
                service,
                version=current["Version"]["Index"],
                mode=docker.types.ServiceMode("replicated", replicas=0),
                fetch_current_spec=True,
            )
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not stop {service}: {exc.explanation or exc}") from exc
        if container is not None and grace < swarmspec.STOP_GRACE:
            # The swarm would wait its own (longer) grace; on this node the stop can be asked directly.
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                self.client.api.stop(container["Id"], timeout=int(grace + 0.999))

    def _wait_stopped(self, service: str, timeout: float) -> None:
        """Until the swarm has deleted the tasks a scale to zero removes (once they stopped).
        Removing a service while the swarm deletes its tasks crashes dockerd 20.10 (swarmkit's
        SetServiceTasksRemove reads a task deleted meanwhile: a nil pointer), so removals wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self._tasks([service]).get(service, [])
            # Left: only the history of earlier crashes (shut down, kept, not being deleted).
            if all(t.get("DesiredState") != "remove" and swarmspec.task_state(t) == "exited" for t in tasks):
                return
            time.sleep(_POLL)
        log.warning("service %s still had tasks after %.0fs", service, timeout)

    def _wait_done(self, service: str) -> int:
        """A one-off's exit status once its task finished; 143 if the service was removed (stopped)."""
        while True:
            try:
                tasks = self._tasks([service]).get(service, [])
                self.client.api.inspect_service(service)
            except docker.errors.NotFound:
                return 128 + 15
            task = swarmspec.current_task(tasks)
            code = swarmspec.exit_code(task)
            if code is not None:
                return code
            time.sleep(_POLL)

    def _remove_service(self, service: str) -> None:
        try:
            self.client.api.remove_service(service)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not remove {service}: {exc.explanation or exc}") from exc


def service_logs(client: docker.DockerClient, service: str, **params: Any) -> CancellableStream:
    """GET /services/ID/logs as a stream `close()` ends from another thread (docker-py's own
    service_logs gives a bare generator, which cannot be stopped while it waits for a line)."""
    api = client.api
    res = api._get(api._url("/services/{0}/logs", service), params=params, stream=True)
    api._raise_for_status(res)
    return CancellableStream(api._get_result_tty(True, res, False), res)
