"""The docker side of backing services: one container per service, from the addons image, on a
network of its own; one more network per linked app, which only that app's containers and the
service's join (docker keeps bridges apart, so no other container can reach the service).

    STATE/services/NAME/data      the service's data (bind-mounted at kinds.DATA)
    STATE/services/NAME/secret    its password, 0600 root (mounted read-only at kinds.SECRET_DIR)

The argument builders are pure (tests compare them); `Engine` runs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from addons.kinds import DATA, SECRET_DIR, Kind
from core import dockercli
from core.errors import ServiceError

LABEL_PLATFORM = "io.deis.platform"
LABEL_SERVICE = "io.deis.service"
LABEL_KIND = "io.deis.service-kind"
# As app containers (scheduler.docker): docker's defaults minus raw sockets, device nodes, file
# capabilities and audit writes. The start scripts need chown and setuid (runuser) as root.
CAP_DROP = ("NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE")
SECURITY_OPT = ("no-new-privileges",)
_SECOND = 1_000_000_000  # the engine's health-check times are nanoseconds
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "TMPDIR")


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def container_name(platform: str, name: str) -> str:
    """The service's container: its name, then a mark of the platform (several share an engine)."""
    return f"{name}.service.{_hash(platform)[:6]}"


def home_network(platform: str, name: str) -> str:
    return f"deis-svc-{_hash(platform, name)}"


def link_network(platform: str, name: str, app: str) -> str:
    """The network service `name` and the containers of `app` share while they are linked."""
    return f"deis-link-{_hash(platform, name, app)}"


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def secret_dir(self) -> Path:
        return self.root / "secret"

    @property
    def password(self) -> Path:
        return self.secret_dir / "password"


def paths(state_dir: Path, name: str) -> Paths:
    return Paths(state_dir / "services" / name)


def run_kwargs(
    kind: Kind,
    name: str,
    platform: str,
    image: str,
    where: Paths,
    *,
    memory: int | None,
    pids_limit: int | None,
) -> dict[str, Any]:
    """What `containers.run` gets for a service (pure)."""
    kw: dict[str, Any] = {
        "image": image,
        "command": ["/bin/sh", "-c", kind.run_script],
        "name": container_name(platform, name),
        "hostname": name,
        "labels": {LABEL_PLATFORM: platform, LABEL_SERVICE: name, LABEL_KIND: kind.name},
        "detach": True,
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "init": True,
        "network": home_network(platform, name),
        "volumes": {
            str(where.data): {"bind": DATA, "mode": "rw"},
            str(where.secret_dir): {"bind": SECRET_DIR, "mode": "ro"},
        },
        # `services:info` shows what the engine saw; `services:create` waits by probing itself.
        "healthcheck": {
            "test": list(kind.health),
            "interval": 10 * _SECOND,
            "timeout": 5 * _SECOND,
            "retries": 3,
            "start_period": 30 * _SECOND,
        },
        "cap_drop": list(CAP_DROP),
        "security_opt": list(SECURITY_OPT),
        # postgres's shared memory segments (docker's default /dev/shm is 64 MB)
        "shm_size": 128 * 1024 * 1024,
    }
    if memory:
        kw["mem_limit"] = memory
    if pids_limit:
        kw["pids_limit"] = pids_limit
    return kw


def redis_restore_argv(image: str, where: Paths) -> list[str]:
    """A helper container (no network) that takes an RDB on stdin, checks it, and makes it the
    base of a fresh append-only directory (the server is stopped meanwhile): redis 7 loads an RDB
    only through its AOF manifest when append-only is on."""
    script = f"""set -eu
D={DATA}/redis
install -d -o redis -g redis -m 700 "$D"
cat > "$D/restore.tmp"
if ! redis-check-rdb "$D/restore.tmp" >/dev/null 2>&1; then
  rm -f "$D/restore.tmp"; echo "that is not a redis RDB file" >&2; exit 3
fi
N="$D/appendonlydir.new"; rm -rf "$N"; mkdir -m 700 "$N"
mv "$D/restore.tmp" "$N/appendonly.aof.1.base.rdb"
printf 'file appendonly.aof.1.base.rdb seq 1 type b\\n' > "$N/appendonly.aof.manifest"
chown -R redis:redis "$N"; rm -rf "$D/appendonlydir" "$D/dump.rdb"; mv "$N" "$D/appendonlydir"
"""
    return dockercli.run(
        dockercli.Run(
            image=image,
            command=("/bin/sh", "-c", script),
            mounts=(dockercli.Mount(str(where.data), DATA),),
            interactive=True,
            pull_never=True,
            network="none",
            cap_drop=CAP_DROP,
            security_opt=SECURITY_OPT,
            pids_limit=64,
        )
    )


def new_password(where: Paths) -> None:
    """Make the service's directories and a fresh password file (0600, root), once."""
    where.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    where.data.mkdir(exist_ok=True, mode=0o700)
    where.secret_dir.mkdir(exist_ok=True, mode=0o700)
    fd = os.open(where.password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(24))  # URL- and SQL-safe: [A-Za-z0-9_-]


def password(where: Paths) -> str:
    try:
        return where.password.read_text().strip()
    except OSError as exc:
        raise ServiceError(f"the service's password file is unreadable: {exc.strerror}") from exc


def forget(where: Paths) -> None:
    """Remove the service's data and password (the data is the container's: no link is followed)."""
    if where.root.exists():
        shutil.rmtree(where.root)


@dataclass(frozen=True)
class Status:
    state: str  # running, restarting, exited, ...; "missing" without a container
    health: str  # healthy, unhealthy, starting, or ""
    restarts: int
    started: str  # the engine's RFC 3339 start time


class Engine:
    def __init__(self, platform: str, image: str, client: docker.DockerClient | None = None) -> None:
        self.platform = platform
        self.image = image
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

    def _container(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(container_name(self.platform, name))
        except docker.errors.NotFound:
            return None

    def _network(self, net: str, service: str) -> None:
        try:
            self.client.networks.get(net)
        except docker.errors.NotFound:
            try:
                self.client.networks.create(
                    net,
                    driver="bridge",
                    internal=True,  # nothing beyond the bridge: the app's own network reaches out
                    labels={LABEL_PLATFORM: self.platform, LABEL_SERVICE: service},
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise ServiceError(f"could not make network {net}: {exc.explanation or exc}") from exc

    def _drop_network(self, net: str) -> None:
        try:
            network = self.client.networks.get(net)
            network.reload()
            for c in network.containers:
                with contextlib.suppress(docker.errors.APIError):
                    network.disconnect(c, force=True)
            network.remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not remove network {net}: {exc.explanation or exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self, kind: Kind, name: str, where: Paths, *, memory: int | None, pids: int | None) -> None:
        self._network(home_network(self.platform, name), name)
        kw = run_kwargs(kind, name, self.platform, self.image, where, memory=memory, pids_limit=pids)
        try:
            self.client.containers.run(**kw)
        except docker.errors.APIError as exc:
            raise ServiceError(f"could not start service {name}: {exc.explanation or exc}") from exc

    def wait_ready(self, kind: Kind, name: str, timeout: float) -> None:
        """Until the service answers its own health check inside the container (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self._container(name)
            if c is None:
                raise ServiceError(f"service {name} has no container")
            if c.status in ("exited", "dead") or int(c.attrs.get("RestartCount") or 0) >= 2:
                raise ServiceError(f"service {name} stopped: {self.last_line(name)}")
            if c.status == "running":
                with contextlib.suppress(docker.errors.APIError):
                    if c.exec_run(list(kind.health[1:])).exit_code == 0:
                        return
            if time.monotonic() > deadline:
                raise ServiceError(f"service {name} did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def last_line(self, name: str) -> str:
        c = self._container(name)
        if c is None:
            return "no container"
        lines = c.logs(tail=3).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {c.attrs['State'].get('ExitCode')}"

    def status(self, name: str) -> Status:
        c = self._container(name)
        if c is None:
            return Status("missing", "", 0, "")
        state = c.attrs["State"]
        status = "restarting" if state.get("Restarting") else str(state.get("Status", "unknown"))
        health = str((state.get("Health") or {}).get("Status") or "")
        return Status(status, health, int(c.attrs.get("RestartCount") or 0), str(state.get("StartedAt", "")))

    def stop(self, name: str) -> None:
        c = self._container(name)
        if c is not None:
            c.stop(timeout=30)

    def start(self, name: str) -> None:
        c = self._container(name)
        if c is None:
            raise ServiceError(f"service {name} has no container")
        c.start()

    def destroy(self, name: str) -> None:
        c = self._container(name)
        if c is not None:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        self._drop_network(home_network(self.platform, name))

    # -- links -------------------------------------------------------------------------------
    def link(self, name: str, app: str) -> str:
        """The service joins the app's link network, reachable there as `name`; the network's name."""
        net = link_network(self.platform, name, app)
        self._network(net, name)
        c = self._container(name)
        if c is None:
            raise ServiceError(f"service {name} has no container")
        try:
            self.client.api.connect_container_to_network(c.id, net, aliases=[name])
        except docker.errors.APIError as exc:
            if "already exists" not in str(exc.explanation or exc):
                raise ServiceError(f"could not link {name} to {app}: {exc.explanation or exc}") from exc
        return net

    def unlink(self, name: str, app: str) -> None:
        """Every container leaves the link network, which goes."""
        self._drop_network(link_network(self.platform, name, app))

    # -- inside the container ----------------------------------------------------------------
    def output(self, name: str, argv: list[str], user: str = "root") -> str:
        c = self._container(name)
        if c is None or c.status != "running":
            return ""
        try:
            r = c.exec_run(argv, user=user)
        except docker.errors.APIError:
            return ""
        return r.output.decode("utf-8", "replace").strip() if r.exit_code == 0 else ""

    def size(self, name: str) -> int | None:
        out = self.output(name, ["du", "-sb", DATA])
        return int(out.split()[0]) if out[:1].isdigit() else None

    def attached(
        self,
        argv: list[str],
        stdin: int | None,
        stdout: int,
        stderr: int,
        hangup: threading.Event | None = None,
    ) -> int:
        """Run a docker CLI argv (exec, logs, a helper) on the caller's descriptors; its status.
        It is killed once `hangup` is set (the client went away)."""
        env = {k: os.environ[k] for k in _CHILD_ENV if k in os.environ}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=stdout,
                stderr=stderr,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run docker: {exc}") from exc
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if hangup is not None and hangup.is_set():
                        proc.kill()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return rc if rc >= 0 else 128 - rc

    def exec_argv(self, name: str, argv: tuple[str, ...], user: str, *, stdin: bool, tty: bool) -> list[str]:
        cli = dockercli.exec_(
            container_name(self.platform, name), argv, user=user, interactive=stdin, tty=tty
        )
        # On a terminal the CLI must own it (its controlling terminal) to hear of resizes.
        return ["setsid", "--ctty", "--wait", *cli] if tty else cli

    def logs_argv(self, name: str, *, follow: bool, tail: int | None) -> list[str]:
        return dockercli.logs(container_name(self.platform, name), follow=follow, tail=tail)
