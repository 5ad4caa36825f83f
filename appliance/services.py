"""The platform's backing services: dockerd, the stack image, etcd and the registry.

Builders here are pure and return data (argv lists, the registry's config text); the code that runs
them is below them. Every process this module starts is detached (its own session), logs to
``LOG_DIR/NAME.log`` and leaves its PID in ``RUN_DIR/NAME.pid``. Stopping a service signals only the
PID from that pidfile, and only if that process still runs the program we started (a PID can be
reused): nothing else on the machine is ever signalled.

    ensure_dockerd      use the docker daemon that answers, else start one (and only then stop it later)
    ensure_stack_image  debootstrap + docker import, only when the image is missing (or forced)
    start / stop        one path for every Service: idempotent start, bounded readiness wait,
                        SIGTERM, wait, SIGKILL
    ensure_debootstrap_image  the same for any image made from Debian packages (builders.stacks uses it)
    up_services         dockerd, the images, etcd, registry (nginx and the SSH appliance start elsewhere)
    down_services       registry, etcd, and dockerd if we started it

Errors are one line each, as ``appliance.errors.ServiceError``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from appliance.errors import DeisError, ServiceError
from appliance.output import Output
from appliance.settings import Settings

DEBIAN_SUITE = "bookworm"
STACK_PACKAGES = ("python3", "ca-certificates")
POLL_INTERVAL = 0.1
# debootstrap targets under the state dir; one left by an interrupted build is removed by the next
STACK_TMP_PREFIX = "stack-build-"  # that of the stack image; others use LABEL-build-


# -- pure builders ----------------------------------------------------------------------------------


def dockerd_argv(settings: Settings) -> list[str]:
    return ["dockerd"]


def etcd_argv(settings: Settings) -> list[str]:
    client = f"http://127.0.0.1:{settings.etcd_port}"
    peer = f"http://127.0.0.1:{settings.etcd_peer_port}"
    return [
        "etcd",
        "--name", "deis",
        "--data-dir", str(settings.state_dir / "etcd"),
        "--enable-v2=true",
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"deis={peer}",
    ]  # fmt: skip


def registry_config_path(settings: Settings) -> Path:
    return settings.state_dir / "registry" / "config.yml"


def registry_config(settings: Settings) -> str:
    """The registry's config.yml. Paths are written as double-quoted scalars (JSON strings are valid YAML)."""
    data_dir = json.dumps(str(settings.state_dir / "registry" / "data"))
    return (
        "version: 0.1\n"
        "log:\n"
        "  fields:\n"
        "    service: registry\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "  filesystem:\n"
        f"    rootdirectory: {data_dir}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{settings.registry_port}\n"
    )


def registry_argv(settings: Settings) -> list[str]:
    return ["docker-registry", "serve", str(registry_config_path(settings))]


def debootstrap_argv(
    target: Path,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
    packages: tuple[str, ...] = STACK_PACKAGES,
) -> list[str]:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(target)]
    if mirror:
        argv.append(mirror)
    return argv


def chroot_apt_argv(root: Path, packages: tuple[str, ...]) -> list[str]:
    """apt-get inside a debootstrapped root (on the host's network): it resolves what debootstrap's
    own resolver cannot (virtual packages, as npm's dependencies need)."""
    return ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]


def mount_proc_argv(root: Path) -> list[str]:
    return ["mount", "-t", "proc", "proc", str(root / "proc")]


def tar_argv(root: Path) -> list[str]:
    return ["tar", "-C", str(root), "-c", "."]


def docker_import_argv(image: str, changes: tuple[str, ...] = ()) -> list[str]:
    """``changes`` are Dockerfile instructions (``ENTRYPOINT [...]``, ``LABEL k=v``) set on the image."""
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, "-", image]


def umount_argv(path: str) -> list[str]:
    return ["umount", "--lazy", path]


def mounts_under(root: Path, mountinfo: str) -> list[str]:
    """Mount points at or below ``root`` in /proc/self/mountinfo text, deepest first."""
    prefix = str(root).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \040, \011, \012, \134.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


# -- readiness probes -------------------------------------------------------------------------------

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of a loopback URL answers 200."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"readiness probes stay on loopback, not {url}")
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def docker_answers(timeout: float = 3.0) -> bool:
    """True when the docker daemon (DOCKER_HOST or the default socket) answers a ping."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # the SDK raises DockerException, requests' errors or OSError: all mean "no"
        return False


# -- services ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A process we start, wait for, and stop by our own pidfile."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    address: str = ""
    package: str = ""  # the Debian package that provides argv[0], for error messages
    # A healthy instance that someone else started is fine to use (dockerd); otherwise it is an error.
    shared: bool = False
    ready_timeout: float = 30.0
    stop_grace: float = 10.0
    setup: Callable[[], None] | None = None


def dockerd_service(settings: Settings) -> Service:
    return Service(
        name="dockerd",
        argv=dockerd_argv(settings),
        ready=docker_answers,
        address="unix:///var/run/docker.sock",
        package="docker.io",
        shared=True,
        ready_timeout=30.0,
        # dockerd stops running containers (10 s each by default) before it exits.
        stop_grace=60.0,
    )


def etcd_service(settings: Settings) -> Service:
    return Service(
        name="etcd",
        argv=etcd_argv(settings),
        ready=lambda: http_ok(f"http://127.0.0.1:{settings.etcd_port}/v2/keys"),
        address=f"127.0.0.1:{settings.etcd_port}",
        package="etcd-server",
    )


def registry_service(settings: Settings) -> Service:
    def setup() -> None:
        path = registry_config_path(settings)
        (path.parent / "data").mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(registry_config(settings))
        os.replace(tmp, path)

    return Service(
        name="registry",
        argv=registry_argv(settings),
        ready=lambda: http_ok(f"http://127.0.0.1:{settings.registry_port}/v2/"),
        address=f"127.0.0.1:{settings.registry_port}",
        package="docker-registry",
        setup=setup,
    )


def services(settings: Settings) -> list[Service]:
    """The services `up_services` starts with the shared start path, in start order."""
    return [etcd_service(settings), registry_service(settings)]


def pidfile(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def logfile(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def running_pid(service: Service, settings: Settings) -> int | None:
    """The PID from our pidfile if that process is alive and still runs the program we started."""
    pid = _read_pid(pidfile(settings, service.name))
    if pid is None or not _alive(pid):
        return None
    return pid if _runs(pid, service.argv[0]) else None


def start(service: Service, settings: Settings, out: Output, timeout: float | None = None) -> int | None:
    """Start ``service`` unless ours already runs; wait until it is ready. Returns our PID.

    Returns None when a ``shared`` service is already answering and someone else started it.
    """
    timeout = service.ready_timeout if timeout is None else timeout
    with _lock(settings, service.name):
        pid = running_pid(service, settings)
        if pid is not None:
            if service.ready():
                out.detail(f"{service.name} already running (pid {pid})")
                return pid
            out.detail(f"{service.name} is starting (pid {pid}), waiting for it")
            _wait_ready(service, settings, pid, timeout)
            return pid
        pidfile(settings, service.name).unlink(missing_ok=True)  # stale, if any
        if service.ready():
            if service.shared:
                out.detail(f"{service.name} already answering on {service.address}, using it")
                return None
            raise ServiceError(
                f"{service.name}: something this platform did not start already answers on {service.address};"
                " stop it or choose another port"
            )
        return _spawn(service, settings, out, timeout)


def stop(service: Service, settings: Settings, out: Output, grace: float | None = None) -> bool:
    """Stop our own process of ``service`` (from its pidfile). True if one was running."""
    path = pidfile(settings, service.name)
    if not path.exists():
        return False
    grace = service.stop_grace if grace is None else grace
    with _lock(settings, service.name):
        pid = _read_pid(path)
        if pid is None or not _alive(pid) or not _runs(pid, service.argv[0]):
            path.unlink(missing_ok=True)
            out.detail(f"{service.name} was not running (removed a stale pidfile)")
            return False
        out.step(f"Stopping {service.name} (pid {pid})")
        _terminate(pid, grace, service.name)
        path.unlink(missing_ok=True)
        return True


def is_running(service: Service, settings: Settings) -> bool:
    """Ours runs and answers."""
    return running_pid(service, settings) is not None and service.ready()


def status(settings: Settings) -> dict[str, bool]:
    """dockerd: the daemon answers (whoever started it); others: our process runs and answers."""
    result = {"dockerd": docker_answers()}
    for service in services(settings):
        result[service.name] = is_running(service, settings)
    return result


# -- dockerd and the stack image --------------------------------------------------------------------


def ensure_dockerd(settings: Settings, out: Output, timeout: float = 30.0) -> None:
    """Use the docker daemon that answers; otherwise start dockerd and wait (bounded) until it answers."""
    if docker_answers():
        return
    out.step("Starting dockerd")
    start(dockerd_service(settings), settings, out, timeout=timeout)


def stop_dockerd(settings: Settings, out: Output) -> bool:
    """Stop dockerd only if this platform started it (its pidfile exists)."""
    return stop(dockerd_service(settings), settings, out)


def image_exists(image: str) -> bool:
    import docker
    import requests
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=30)
    except (DockerException, requests.RequestException) as exc:
        raise ServiceError(f"cannot reach the docker daemon: {exc}") from exc
    try:
        client.images.get(image)
        return True
    except ImageNotFound:
        return False
    except (DockerException, requests.RequestException) as exc:
        raise ServiceError(f"cannot inspect image {image}: {exc}") from exc
    finally:
        client.close()


def ensure_stack_image(
    settings: Settings,
    out: Output,
    force: bool = False,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
) -> bool:
    """Build ``settings.stack_image`` (debootstrap + docker import) if missing or ``force``. True if built."""
    return ensure_debootstrap_image(
        settings, out, DebootstrapImage(settings.stack_image, STACK_PACKAGES), force, suite, mirror
    )


@dataclass(frozen=True)
class DebootstrapImage:
    """An image made on the host from Debian packages: debootstrap, then ``prepare(root)``, then import."""

    image: str
    packages: tuple[str, ...]  # debootstrap --include
    apt_packages: tuple[str, ...] = ()  # then apt-get install in the root (full dependency resolution)
    changes: tuple[str, ...] = ()  # Dockerfile instructions applied by `docker import --change`
    prepare: Callable[[Path], None] | None = None  # adds the platform's own files to the root
    label: str = "stack"  # the lock and log name
    # An image without this `io.deis.stack-digest` label is stale (made from other packages or files).
    digest: str = ""


def image_label(image: str, key: str) -> str | None:
    """A label of a local image, or None when the image (or the label) is missing."""
    import docker
    import requests
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=30)
    except (DockerException, requests.RequestException) as exc:
        raise ServiceError(f"cannot reach the docker daemon: {exc}") from exc
    try:
        labels = (client.images.get(image).attrs.get("Config") or {}).get("Labels") or {}
        value = labels.get(key)
        return str(value) if value is not None else None
    except ImageNotFound:
        return None
    except (DockerException, requests.RequestException) as exc:
        raise ServiceError(f"cannot inspect image {image}: {exc}") from exc
    finally:
        client.close()


DIGEST_LABEL = "io.deis.stack-digest"


def _current(spec: DebootstrapImage) -> bool:
    if spec.digest:
        return image_label(spec.image, DIGEST_LABEL) == spec.digest
    return image_exists(spec.image)


def ensure_debootstrap_image(
    settings: Settings,
    out: Output,
    spec: DebootstrapImage,
    force: bool = False,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
) -> bool:
    """Make ``spec.image`` if missing, stale or ``force``: debootstrap on the host, then docker import.

    Containers have no network access to rely on, so every package is installed here, on the host.
    True if the image was (re)made.
    """
    image = spec.image
    if not force and _current(spec):
        return False
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with _lock(settings, spec.label):
        if not force and _current(spec):  # made meanwhile by someone holding the lock
            return False
        prefix = f"{spec.label}-build-"
        for stale in settings.state_dir.glob(f"{prefix}*"):
            _remove_tree(stale)
        log = logfile(settings, spec.label)
        began = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=settings.state_dir))
        try:
            root = tmp / "rootfs"
            out.step(f"Building the {spec.label} image {image} (debootstrap {suite}, a minute or two)")
            out.detail(f"packages: {', '.join(spec.packages)}")
            out.detail(f"log: {log}")
            _run_logged(
                debootstrap_argv(root, suite, mirror, spec.packages), log, "debootstrap", "debootstrap"
            )
            if spec.apt_packages:
                out.step(f"Installing {', '.join(spec.apt_packages)} into it with apt-get")
                _apt_install(root, spec.apt_packages, log)
            if spec.prepare is not None:
                spec.prepare(root)
            # apt's package cache is of no use in an image that never runs apt (no network inside)
            for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                deb.unlink()
            for index in (root / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
                index.unlink()
            changes = spec.changes + ((f"LABEL {DIGEST_LABEL}={spec.digest}",) if spec.digest else ())
            out.step(f"Importing it into docker as {image}")
            _import_tree(root, image, log, changes)
        finally:
            _remove_tree(tmp)
        out.detail(f"{image} ready in {time.monotonic() - began:.0f} s")
        return True


# -- bring-up and tear-down -------------------------------------------------------------------------


def ensure_images(settings: Settings, out: Output, force: bool = False) -> None:
    """The stack image and the buildpack stacks (slugbuilder, slugrunner), each made only when missing."""
    from builders import stacks  # builders imports this module: import it late

    # Each debootstrap spends much of its time waiting on the mirror and dpkg's fsyncs: made side by
    # side, the three take little longer than the largest alone.
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [
            pool.submit(ensure_stack_image, settings, out, force=force),
            *(pool.submit(ensure_debootstrap_image, settings, out, spec, force) for spec in stacks.specs()),
        ]
        for job in jobs:
            job.result()


def up_services(settings: Settings, out: Output) -> None:
    """dockerd, the images, etcd, the registry. nginx and the SSH appliance are started elsewhere."""
    ensure_dockerd(settings, out)
    ensure_images(settings, out)
    for service in services(settings):
        out.step(f"Starting {service.name} on {service.address}")
        start(service, settings, out)


def down_services(settings: Settings, out: Output) -> None:
    """Stop the registry and etcd, and dockerd only if we started it."""
    for service in reversed(services(settings)):
        stop(service, settings, out)
    stop_dockerd(settings, out)


# -- running processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(settings: Settings, name: str) -> Iterator[None]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _spawn(service: Service, settings: Settings, out: Output, timeout: float) -> int:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    if service.setup is not None:
        service.setup()
    log = logfile(settings, service.name)
    began = time.monotonic()
    with open(log, "ab") as fh:
        fh.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(service.argv)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            hint = f" (install the {service.package} package)" if service.package else ""
            raise ServiceError(f"{service.name}: {service.argv[0]} not found{hint}") from exc
        except OSError as exc:
            raise ServiceError(f"{service.name}: cannot start {service.argv[0]}: {exc}") from exc
    path = pidfile(settings, service.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, path)
    try:
        _wait_ready(service, settings, proc.pid, timeout, proc)
    except ServiceError:
        path.unlink(missing_ok=True)
        raise
    out.detail(f"{service.name} ready in {time.monotonic() - began:.1f} s (pid {proc.pid}, log {log})")
    return proc.pid


def _wait_ready(
    service: Service,
    settings: Settings,
    pid: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    log = logfile(settings, service.name)
    deadline = time.monotonic() + timeout
    while True:
        if service.ready():
            return
        code = proc.poll() if proc is not None else None
        if code is not None or (proc is None and not _alive(pid)):
            why = f"exited with status {code}" if code is not None else "exited"
            raise ServiceError(f"{service.name} {why} before it was ready: {_last_line(log)} (see {log})")
        if time.monotonic() >= deadline:
            where = service.address or "its address"
            if proc is None:  # not started by this call: report, leave it to `down`
                raise ServiceError(
                    f"{service.name} (pid {pid}) runs but did not answer on {where} within {timeout:g} s;"
                    f" stop it and start again (see {log})"
                )
            _terminate(pid, 5.0, service.name)
            proc.poll()
            raise ServiceError(
                f"{service.name} was not ready on {where} after {timeout:g} s; stopped it:"
                f" {_last_line(log)} (see {log})"
            )
        time.sleep(POLL_INTERVAL)


def _terminate(pid: int, grace: float, name: str) -> None:
    """SIGTERM ``pid`` alone, wait up to ``grace``, then SIGKILL and wait a little more."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(POLL_INTERVAL)
    if _alive(pid):
        raise ServiceError(f"{name} (pid {pid}) did not exit after SIGKILL")


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie child of ours is reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _runs(pid: int, program: str) -> bool:
    """Whether process ``pid`` was started as ``program`` (guards against a reused PID)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return argv0 == program or os.path.basename(argv0) == os.path.basename(program)


def _last_line(path: Path, limit: int = 300) -> str:
    """The last non-blank line the latest command wrote to ``path`` (after our last ``==>`` header)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "no log"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    headers = [i for i, ln in enumerate(lines) if ln.startswith("==> ")]
    if headers:
        lines = lines[headers[-1] + 1 :]
    if not lines:
        return "no output"
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _run_logged(
    argv: list[str], log: Path, what: str, package: str, env: dict[str, str] | None = None
) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            code = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env
            ).returncode
        except FileNotFoundError as exc:
            raise ServiceError(f"{what}: {argv[0]} not found (install the {package} package)") from exc
    if code != 0:
        raise ServiceError(f"{what} failed with status {code}: {_last_line(log)} (see {log})")


def _import_tree(root: Path, image: str, log: Path, changes: tuple[str, ...] = ()) -> None:
    """``tar -C ROOT -c . | docker import - IMAGE``, as two processes joined by a pipe."""
    imp_argv = docker_import_argv(image, changes)
    with open(log, "ab") as fh:
        fh.write(f"==> {' '.join(tar_argv(root))} | {' '.join(imp_argv)}\n".encode())
        fh.flush()
        try:
            tar = subprocess.Popen(
                tar_argv(root), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fh
            )
        except FileNotFoundError as exc:
            raise ServiceError("tar not found") from exc
        assert tar.stdout is not None
        try:
            imp = subprocess.Popen(imp_argv, stdin=tar.stdout, stdout=fh, stderr=fh)
        except FileNotFoundError as exc:
            tar.kill()
            tar.wait()
            raise ServiceError("docker import: docker not found (install the docker.io package)") from exc
        finally:
            tar.stdout.close()  # the import holds the read end now; tar sees SIGPIPE if it dies
        imp_code = imp.wait()
        tar_code = tar.wait()
    if imp_code != 0:
        raise ServiceError(f"docker import failed with status {imp_code}: {_last_line(log)} (see {log})")
    if tar_code != 0:
        raise ServiceError(
            f"tar of the stack root failed with status {tar_code}: {_last_line(log)} (see {log})"
        )


def _apt_install(root: Path, packages: tuple[str, ...], log: Path) -> None:
    # No daemon may start inside the root (policy-rc.d), and /proc is there only while apt runs.
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _run_logged(mount_proc_argv(root), log, "mount /proc", "mount")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    try:
        _run_logged(chroot_apt_argv(root, packages), log, "apt-get install", "apt", env=env)
    finally:
        subprocess.run(umount_argv(str(root / "proc")), stdin=subprocess.DEVNULL, capture_output=True)
        policy.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    """Remove a debootstrap target, unmounting whatever an interrupted debootstrap left mounted in it."""
    if not path.exists():
        return
    real = path.resolve()
    for point in mounts_under(real, _mountinfo()):
        subprocess.run(umount_argv(point), stdin=subprocess.DEVNULL, capture_output=True)
    left = mounts_under(real, _mountinfo())
    if left:
        raise ServiceError(f"left {path} in place: {left[0]} is still mounted")
    shutil.rmtree(real)


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ""


# -- command line (used by ./platform) --------------------------------------------------------------


def main(argv: list[str] | None = None, stream: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.services", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", help="default: $DEIS_STATE_DIR or /var/lib/deis")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-test-prereqs", help="dockerd answering and the stack images present")
    stack = sub.add_parser("stack-image", help="build the stack image if missing")
    stack.add_argument("--force", action="store_true", help="rebuild even if it exists")
    sub.add_parser("up", help="dockerd, stack image, etcd, registry")
    sub.add_parser("down", help="stop the registry, etcd, and dockerd if we started it")
    st = sub.add_parser("status", help="which services answer")
    st.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    out = Output(stream)
    settings = Settings.load(args.state_dir)
    try:
        if args.command == "ensure-test-prereqs":
            ensure_dockerd(settings, out)
            ensure_images(settings, out)
        elif args.command == "stack-image":
            ensure_dockerd(settings, out)
            ensure_stack_image(settings, out, force=args.force)
        elif args.command == "up":
            up_services(settings, out)
        elif args.command == "down":
            down_services(settings, out)
        elif args.command == "status":
            result = status(settings)
            if args.json:
                out.line(json.dumps(result))
            else:
                for name, ok in result.items():
                    out.line(f"{name:<10} {'up' if ok else 'down'}")
            return 0 if all(result.values()) else 3
    except DeisError as exc:
        out.error(str(exc))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
