"""The single-host backend: containers on the local dockerd, ports published on 127.0.0.1 only.

Docker's own ways live here and nowhere else:
- a restart starts the new container beside the old one: the old is renamed `NAME.ID` (docker
  names are unique), keeps its host port and is still listed under its process name;
- a container's TCP "probe" looks inside its network namespace (/proc/PID/net/tcp): through
  docker-proxy a connect to the published port always succeeds, listening or not;
- one-off instances are created through the API (their config never on a command line, where
  any local user could read it in /proc), then `docker start --attach` runs attached to the
  caller's descriptors;
- every container it starts is confined: the platform's app network, where containers cannot
  reach each other (inter-container traffic off; the router reaches each through its published
  loopback port), NET_RAW and a few other capabilities dropped, no-new-privileges, a pids limit.
  Containers started before this (on docker's default bridge) keep running and routed until
  they are replaced; docker's isolation rules keep the two bridges apart.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import hashlib
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import docker
import docker.errors
import requests
from docker.models.containers import Container

from core import dockercli
from core.errors import DeployError, ServiceError
from core.names import ContainerName
from scheduler import dockerstats, health, quickack
from scheduler.base import Backend, Instance, LogLine, ProcessSpec, Stdio, Usage
from scheduler.dockerevents import LABEL_APP, DockerEventStream

log = logging.getLogger("deis.scheduler")

LABEL_PLATFORM = "io.deis.platform"
# A container moved aside by a restart is called NAME.SUFFIX (older platforms used `.retiring`).
_ASIDE = re.compile(r"(?P<base>.+?)\.(?:retiring|[0-9a-f]{12})")
# What the docker CLI of a one-off needs from our environment.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "TMPDIR")
# Docker's defaults minus raw sockets (ARP/IP spoofing on the bridge), device nodes, file
# capabilities and audit writes; what apps use (chown, setuid to drop root, binding :80) stays.
CAP_DROP = ("NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE")
SECURITY_OPT = ("no-new-privileges",)
# Inter-container traffic off: containers on it reach the host (the router) but not each other.
NETWORK_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}


def connect() -> docker.DockerClient:
    """A client of the local engine; ServiceError when it does not answer."""
    try:
        return docker.from_env(timeout=120)
    except docker.errors.DockerException as exc:
        raise ServiceError(f"docker is unreachable: {exc}") from exc


def container_events(client: docker.DockerClient, label: str) -> Any:
    """The engine's events of containers labelled `label` (K=V), decoded, from now on."""
    try:
        return client.api.events(decode=True, filters={"type": "container", "label": label})
    except docker.errors.APIError as exc:
        raise ServiceError(f"could not follow docker's events: {exc.explanation or exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise ServiceError(f"docker is unreachable: {exc}") from exc


def network_name(platform: str) -> str:
    """The app network of the platform whose state dir is `platform` (one per platform)."""
    return "deis-apps-" + hashlib.sha256(platform.encode()).hexdigest()[:12]


def confinement(spec: ProcessSpec, network: str | None) -> dict[str, Any]:
    """What every container of `spec` gets besides its own settings (docker SDK arguments)."""
    kw: dict[str, Any] = {"cap_drop": list(CAP_DROP), "security_opt": list(SECURITY_OPT)}
    if network:
        kw["network"] = network
    if spec.pids_limit:
        kw["pids_limit"] = spec.pids_limit
    if spec.memory:
        kw["mem_limit"] = spec.memory
    if spec.cpu_shares:
        kw["cpu_shares"] = spec.cpu_shares
    if spec.mounts:
        kw["volumes"] = {host: {"bind": inside, "mode": "rw"} for host, inside in spec.mounts}
    return kw


def labels(spec: ProcessSpec, platform: str) -> dict[str, str]:
    n = spec.name
    return {
        LABEL_PLATFORM: platform,
        LABEL_APP: n.app,
        "io.deis.version": str(n.version),
        "io.deis.type": n.type,
        "io.deis.num": str(n.num),
    }


def run_kwargs(
    spec: ProcessSpec, platform: str, host_port: int | None, network: str | None = None
) -> dict[str, Any]:
    """What `containers.run` gets for `spec`: pure, so tests compare it exactly."""
    kw: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command,
        "name": str(spec.name),
        "environment": dict(spec.env),
        "labels": labels(spec, platform),
        "detach": True,
        # Restart crashed processes in place; `docker stop` (retire) is final.
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "init": True,
    }
    if spec.port is not None and host_port is not None:
        kw["ports"] = {f"{spec.port}/tcp": ("127.0.0.1", host_port)}
    return kw | confinement(spec, network)


def one_off_kwargs(
    spec: ProcessSpec, platform: str, network: str | None, *, interactive: bool, tty: bool
) -> dict[str, Any]:
    """What `containers.create` gets for a one-off instance (pure). Not auto-removed: the engine here
    sometimes fails that removal ("unlinkat ... directory not empty") and `start --attach` then
    exits 125 instead of the command's status; run_attached removes it, after its output is kept."""
    kw: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command or None,
        "name": str(spec.name),
        "environment": dict(spec.env),
        "labels": {k: v for k, v in labels(spec, platform).items() if k != "io.deis.num"},
        "init": True,
        "stdin_open": interactive,
        "tty": tty,
        "detach": False,
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
    }
    return kw | confinement(spec, network)


def one_off_argv(spec: ProcessSpec, *, interactive: bool, tty: bool) -> list[str]:
    """`docker start --attach` of the created one-off (pure; run_attached executes it)."""
    argv = dockercli.start_attached(str(spec.name), interactive=interactive)
    # On a terminal the CLI must own it (its controlling terminal): the kernel then tells it of
    # each resize (SIGWINCH), which it passes on to the container.
    return ["setsid", "--ctty", *argv] if tty else argv


def parse_time(stamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds (`2024-05-01T10:00:00.123456789Z`) as UNIX time."""
    stamp = stamp.strip()
    main, _, frac = stamp.rstrip("Z").partition(".")
    whole = _whole_seconds(main)
    if whole is None:
        return 0.0
    digits = frac[:9] if frac.isdigit() else "".join(c for c in frac if c.isdigit())[:9]
    return whole + (int(digits) / 10 ** len(digits) if digits else 0.0)


@functools.lru_cache(maxsize=256)
def _whole_seconds(main: str) -> int | None:
    """`2024-05-01T10:00:00` as UNIX time (cached: a chatty container's lines share their second)."""
    try:
        return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def process_name(container_name: str) -> ContainerName | None:
    """The process a container runs, from its name: `APP_vN.TYPE.NUM`, or that moved aside."""
    name = container_name.lstrip("/")
    parsed = ContainerName.parse(name)
    if parsed is None and (m := _ASIDE.fullmatch(name)):
        parsed = ContainerName.parse(m["base"])
    return parsed


def parse_log_line(raw: bytes) -> LogLine:
    """One line of `docker logs --timestamps`: `TIME text`."""
    stamp, _, text = raw.partition(b" ")
    return LogLine(parse_time(stamp.decode("ascii", "replace")), text.decode("utf-8", "replace").rstrip("\r"))


class DockerLogStream:
    """Lines of a docker-py log stream; `close()` from another thread shuts its socket."""

    def __init__(self, chunks: Iterable[bytes] | None = None) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[LogLine]:
        if self._chunks is None:
            return
        buf = b""
        try:
            for chunk in self._chunks:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    yield parse_log_line(line)
        except Exception:  # a closed or vanished stream ends the lines, whatever the cause
            return
        if buf:
            yield parse_log_line(buf)

    def close(self) -> None:
        closer = getattr(self._chunks, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # closing an already broken socket
                closer()


def free_port() -> int:
    # A fixed host port (rather than docker's ephemeral pick) survives a container restart unchanged.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DockerBackend(Backend):
    name: ClassVar[str] = "docker"

    Auth = Callable[[], dict[str, str]]  # the platform registry's credentials, asked at each pull

    def __init__(
        self,
        platform: str,
        client: docker.DockerClient | None = None,
        home: str = "",
        registry_auth: Auth | None = None,
    ) -> None:
        self.platform = platform
        self.registry_auth = registry_auth
        self.home = home or platform  # HOME of one-offs' docker CLI (its config lives there)
        self._client = client
        self._lock = threading.Lock()
        self._network: str | None = None
        self._bridge = ""  # the app network's bridge on the host (scheduler.quickack)

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = connect()
            return self._client

    # -- the interface -----------------------------------------------------------------------
    def start(self, spec: ProcessSpec) -> Instance:
        port = free_port() if spec.port is not None else None
        try:
            kw = run_kwargs(spec, self.platform, port, self.network())
            if port is not None:
                quickack.ensure(self._bridge)
            self._make_room(str(spec.name))
            self._ensure_image(spec.image)
            kw.pop("detach")
            c = self.client.containers.create(**kw)
            self._join(c.id or "", spec.networks)
            c.start()
            c.reload()
        except docker.errors.APIError as exc:
            raise DeployError(f"could not start {spec.name}: {exc.explanation or exc}") from exc
        inst = self._instance(c)
        assert inst is not None
        return inst

    def stop(self, ref: str, grace: float) -> None:
        for c in self._containers(ref):
            try:
                c.stop(timeout=int(grace + 0.999))
                self._removing(c)
                c.remove(force=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # removal already in progress
                    continue
                raise ServiceError(f"could not stop {c.name}: {exc.explanation or exc}") from exc

    def instances(self, app: str | None = None) -> list[Instance]:
        out = [i for i in (self._instance(c) for c in self._ours(app)) if i is not None]
        return sorted(out, key=lambda i: (i.name.app, i.name.version, i.name.type, i.name.num, i.started))

    def probe(self, instance: Instance) -> bool:
        if instance.port is None:
            return False
        try:
            pid = self.client.api.inspect_container(instance.id)["State"]["Pid"]
        except docker.errors.NotFound:
            return False
        return bool(pid) and health.port_listening(pid, instance.port)

    def logs(
        self, ref: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> DockerLogStream:
        try:
            chunks = self.client.containers.get(ref).logs(
                stream=True,
                follow=follow,
                timestamps=True,
                tail="all" if tail is None else tail,
                since=since if since and since > 0 else None,
            )
        except docker.errors.NotFound:
            return DockerLogStream(None)
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not read the output of {ref}: {exc.explanation or exc}") from exc
        return DockerLogStream(chunks)

    def run_attached(self, spec: ProcessSpec, stdio: Stdio) -> int:
        interactive = stdio.stdin is not None
        try:
            kw = one_off_kwargs(spec, self.platform, self.network(), interactive=interactive, tty=stdio.tty)
            self._ensure_image(spec.image)
            c = self.client.containers.create(**kw)
            self._join(c.id or "", spec.networks)
        except docker.errors.APIError as exc:
            self._remove(str(spec.name))
            raise DeployError(f"could not start {spec.name}: {exc.explanation or exc}") from exc
        try:
            return self._attach(spec, stdio, one_off_argv(spec, interactive=interactive, tty=stdio.tty))
        finally:
            self._removing(c)  # its last lines are kept first
            self._remove(str(spec.name), tries=5)

    def _attach(self, spec: ProcessSpec, stdio: Stdio, argv: list[str]) -> int:
        env = {k: os.environ[k] for k in _CHILD_ENV if k in os.environ} | {"HOME": self.home}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if stdio.stdin is None else stdio.stdin,
                stdout=stdio.stdout,
                stderr=stdio.stderr,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run docker: {exc}") from exc
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            self.stop(str(spec.name), 0)
            raise
        return rc if rc >= 0 else 128 - rc

    def events(self) -> DockerEventStream:
        return DockerEventStream(container_events(self.client, f"{LABEL_PLATFORM}={self.platform}"))

    def network(self) -> str:
        """The platform's app network, made on first use (inter-container traffic off)."""
        with self._lock:
            if self._network is not None:
                return self._network
        name = network_name(self.platform)
        try:
            net = self.client.networks.get(name)
        except docker.errors.NotFound:
            try:
                net = self.client.networks.create(
                    name,
                    driver="bridge",
                    options=NETWORK_OPTIONS,
                    labels={LABEL_PLATFORM: self.platform},
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another process made it first
                    why = exc.explanation or exc
                    raise ServiceError(f"could not make the app network {name}: {why}") from exc
                net = self.client.networks.get(name)
        options = (net.attrs or {}).get("Options") or {}
        with self._lock:
            self._network = name
            self._bridge = options.get("com.docker.network.bridge.name") or f"br-{(net.id or '')[:12]}"
        return name

    def _join(self, container: str, networks: tuple[str, ...]) -> None:
        """Connect a created container to extra networks before it starts (a linked service's:
        the app finds the service there from its first line on)."""
        for net in networks:
            try:
                self.client.api.connect_container_to_network(container, net)
            except docker.errors.APIError as exc:
                self._remove(container)
                raise DeployError(f"could not join network {net}: {exc.explanation or exc}") from exc

    def _remove(self, name: str, tries: int = 1) -> None:
        for attempt in range(tries):  # a removal the engine fails once often works a moment later
            try:
                self.client.api.remove_container(name, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if attempt + 1 == tries:
                    log.warning("could not remove %s: %s", name, exc.explanation or exc)
                else:
                    time.sleep(0.2 * (attempt + 1))

    def usage(self, instances: list[Instance]) -> dict[str, Usage]:
        def fetch(ref: str) -> dict[str, Any] | None:
            try:
                return dict(self.client.api.stats(ref, stream=False))
            except (docker.errors.APIError, requests.exceptions.RequestException):
                return None

        return dockerstats.usage(fetch, instances)

    # -- faster answers ----------------------------------------------------------------------
    def inspect(self, ref: str) -> Instance | None:
        try:
            return self._instance(self.client.containers.get(ref))
        except docker.errors.NotFound:
            return None

    # -- docker's own ways -------------------------------------------------------------------
    def _instance(self, c: Container) -> Instance | None:
        name = process_name(c.name or "")
        if name is None:
            return None
        attrs = c.attrs
        env = dict(e.split("=", 1) for e in attrs["Config"].get("Env") or [] if "=" in e)
        port = int(env["PORT"]) if env.get("PORT", "").isdigit() else None
        endpoint = None
        bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
        for binding in bindings.get(f"{port}/tcp") or []:
            endpoint = f"{binding.get('HostIp') or '127.0.0.1'}:{binding['HostPort']}"
        state = attrs["State"]
        status = "restarting" if state.get("Restarting") else state.get("Status", "unknown")
        return Instance(
            name=name,
            id=c.id or "",
            state=status,
            endpoint=endpoint,
            port=port,
            started=parse_time(state.get("StartedAt", "")),
            restarts=int(attrs.get("RestartCount") or 0),
        )

    def _make_room(self, name: str) -> None:
        """Free the name for a new container: one that runs moves aside (it keeps serving until it
        is stopped by id), one that is down is removed."""
        try:
            holder = self.client.containers.get(name)
        except docker.errors.NotFound:
            return
        if holder.status in ("running", "restarting"):
            holder.rename(f"{name}.{(holder.id or '')[:12]}")
        else:
            self._removing(holder)
            holder.remove(force=True)

    def _removing(self, c: Container) -> None:
        if self.removing is not None and c.id:
            self.removing(c.id)

    def _ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            auth = self.registry_auth and self.registry_auth()
            self.client.images.pull(image, auth_config=auth)  # splits repo:tag and repo@digest alike

    def _ours(self, app: str | None, name: str | None = None) -> list[Container]:
        filters: dict[str, Any] = {"label": [f"{LABEL_PLATFORM}={self.platform}"]}
        if app is not None:
            filters["label"].append(f"{LABEL_APP}={app}")
        if name is not None:  # docker matches names as regular expressions, with a leading /
            filters["name"] = f"^/{re.escape(name)}($|\\.)"
        try:
            return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker failed to list containers: {exc.explanation or exc}") from exc

    def _containers(self, ref: str) -> list[Container]:
        """The containers `ref` means: every one of a process name (moved aside too), or one id."""
        parsed = ContainerName.parse(ref)
        if parsed is not None:
            return [c for c in self._ours(parsed.app, ref) if process_name(c.name or "") == parsed]
        try:
            return [self.client.containers.get(ref)]
        except docker.errors.NotFound:
            return []
