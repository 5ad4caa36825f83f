"""The single-host backend: containers on the local dockerd, ports published on 127.0.0.1 only."""

from __future__ import annotations

import calendar
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from appliance.errors import DeployError, ServiceError
from appliance.names import ContainerName
from scheduler.base import Backend, ContainerSpec, Instance, LogLine

LABEL_PLATFORM = "io.deis.platform"
LABEL_APP = "io.deis.app"


def run_kwargs(spec: ContainerSpec, platform: str, host_port: int | None) -> dict[str, Any]:
    """What `containers.run` gets for `spec`: pure, so tests compare it exactly."""
    n = spec.name
    labels = {
        LABEL_PLATFORM: platform,
        LABEL_APP: n.app,
        "io.deis.version": str(n.version),
        "io.deis.type": n.type,
        "io.deis.num": str(n.num),
        **spec.labels,
    }
    kw: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command,
        "name": str(n),
        "environment": dict(spec.env),
        "labels": labels,
        "detach": True,
        # Restart crashed processes in place; `docker stop` (retire) is final.
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "init": True,
    }
    if spec.port is not None and host_port is not None:
        kw["ports"] = {f"{spec.port}/tcp": ("127.0.0.1", host_port)}
    if spec.memory:
        kw["mem_limit"] = spec.memory
    if spec.cpu_shares:
        kw["cpu_shares"] = spec.cpu_shares
    return kw


def run_argv(
    spec: ContainerSpec, platform: str, *, interactive: bool = False, tty: bool = False
) -> list[str]:
    """`docker run --rm` for a one-off container (pure; the caller executes it, attached)."""
    n = spec.name
    argv = ["docker", "run", "--rm", "--init", "--name", str(n)]
    argv += ["--label", f"{LABEL_PLATFORM}={platform}", "--label", f"{LABEL_APP}={n.app}"]
    argv += ["--label", f"io.deis.version={n.version}", "--label", f"io.deis.type={n.type}"]
    if interactive:
        argv.append("-i")
    if tty:
        argv.append("-t")
    if spec.memory:
        argv += ["--memory", spec.memory]
    if spec.cpu_shares:
        argv += ["--cpu-shares", str(spec.cpu_shares)]
    for key, value in spec.env.items():
        argv += ["-e", f"{key}={value}"]
    argv.append(spec.image)
    if spec.command:
        argv += spec.command
    return argv


def parse_time(stamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds (`2024-05-01T10:00:00.123456789Z`) as UNIX time."""
    stamp = stamp.strip()
    main, _, frac = stamp.rstrip("Z").partition(".")
    try:
        whole = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    digits = "".join(c for c in frac if c.isdigit())[:9]
    return whole + (int(digits) / 10 ** len(digits) if digits else 0.0)


def parse_log_line(raw: bytes) -> LogLine:
    """One line of `docker logs --timestamps`: `TIME text`."""
    stamp, _, text = raw.partition(b" ")
    return LogLine(parse_time(stamp.decode("ascii", "replace")), text.decode("utf-8", "replace").rstrip("\r"))


class DockerLogStream:
    """Lines of a docker-py log stream; `close()` from another thread shuts its socket."""

    def __init__(self, chunks: Iterable[bytes] | None = None) -> None:
        self._chunks = chunks
        self._closed = False

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
        except Exception:  # noqa: BLE001 - a closed or vanished stream ends the lines, whatever the cause
            return
        if buf:
            yield parse_log_line(buf)

    def close(self) -> None:
        self._closed = True
        closer = getattr(self._chunks, "close", None)
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing an already broken socket
                pass


def free_port() -> int:
    # A fixed host port (rather than docker's ephemeral pick) survives a container restart unchanged.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DockerBackend(Backend):
    def __init__(self, platform: str, client: docker.DockerClient | None = None) -> None:
        self.platform = platform
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(timeout=120)
                except docker.errors.DockerException as exc:
                    raise ServiceError(f"docker is unreachable: {exc}") from exc
            return self._client

    def _instance(self, c: Container) -> Instance | None:
        name = ContainerName.parse(c.name or "")
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
            name,
            c.id or "",
            status,
            endpoint,
            port,
            state.get("StartedAt", ""),
            int(attrs.get("RestartCount") or 0),
        )

    def start(self, spec: ContainerSpec) -> Instance:
        kw = run_kwargs(spec, self.platform, free_port() if spec.port is not None else None)
        try:
            self._ensure_image(spec.image)
            c = self.client.containers.run(**kw)
            c.reload()
        except docker.errors.APIError as exc:
            raise DeployError(f"could not start {spec.name}: {exc.explanation or exc}") from exc
        inst = self._instance(c)
        assert inst is not None
        return inst

    def _ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            self.client.images.pull(image)  # splits repo:tag and repo@digest alike

    def stop(self, name: str, grace: float) -> None:
        try:
            c = self.client.containers.get(name)
            c.stop(timeout=int(grace + 0.999))
            c.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                return
            raise ServiceError(f"could not stop {name}: {exc.explanation or exc}") from exc

    def _ours(self, app: str | None) -> list[Container]:
        filters = {"label": [f"{LABEL_PLATFORM}={self.platform}"]}
        if app is not None:
            filters["label"].append(f"{LABEL_APP}={app}")
        try:
            return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker failed to list containers: {exc.explanation or exc}") from exc

    def instances(self, app: str | None = None) -> list[Instance]:
        out = [i for i in (self._instance(c) for c in self._ours(app)) if i is not None]
        return sorted(out, key=lambda i: (i.name.app, i.name.version, i.name.type, i.name.num))

    def strays(self, app: str | None = None) -> list[tuple[str, str]]:
        return sorted(
            (str(c.labels.get(LABEL_APP, "")), str(c.name))
            for c in self._ours(app)
            if ContainerName.parse(c.name or "") is None
        )

    def inspect(self, name: str) -> Instance | None:
        try:
            return self._instance(self.client.containers.get(name))
        except docker.errors.NotFound:
            return None

    def listening(self, instance: Instance) -> bool:
        # Checked inside the container's network namespace: through docker-proxy a TCP connect
        # always succeeds, listening or not.
        if instance.port is None:
            return False
        try:
            pid = self.client.api.inspect_container(instance.id)["State"]["Pid"]
        except docker.errors.NotFound:
            return False
        return bool(pid) and port_listening(pid, instance.port)

    def run_argv(self, spec: ContainerSpec, *, interactive: bool = False, tty: bool = False) -> list[str]:
        return run_argv(spec, self.platform, interactive=interactive, tty=tty)

    def log_stream(
        self, name: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> DockerLogStream:
        try:
            chunks = self.client.containers.get(name).logs(
                stream=True,
                follow=follow,
                timestamps=True,
                tail="all" if tail is None else tail,
                since=since if since and since > 0 else None,
            )
        except docker.errors.NotFound:
            return DockerLogStream(None)
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not read the output of {name}: {exc.explanation or exc}") from exc
        return DockerLogStream(chunks)

    def rename(self, name: str, new_name: str) -> None:
        try:
            self.client.containers.get(name).rename(new_name)
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not rename {name}: {exc.explanation or exc}") from exc

    def logs(self, name: str, tail: int = 20) -> str:
        try:
            data = self.client.containers.get(name).logs(tail=tail)
        except docker.errors.NotFound:
            return ""
        return bytes(data).decode("utf-8", "replace")


def port_listening(pid: int, port: int) -> bool:
    """Whether the network namespace of `pid` has a TCP socket listening on `port` (any address)."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, st = fields[1], fields[3]
                    if st == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                        return True
        except FileNotFoundError:
            continue
    return False
