"""Processes the platform starts on the host and keeps by their pidfile (dockerd when none runs, the
appliance, and the etcd and registry processes of the previous layout that `up` takes over).

Every process started here is detached (its own session), logs to ``LOG_DIR/NAME.log`` and leaves its
PID in ``RUN_DIR/NAME.pid``. Stopping one signals only the PID from that pidfile, and only if that
process still runs the program we started (a PID can be reused): nothing else on the machine is ever
signalled.

    Service             what to start, how to tell it is ready, how long to wait
    start / stop        one path for every Service: idempotent start, bounded readiness wait,
                        SIGTERM, wait, SIGKILL
    http_ok             the loopback readiness probe

Errors are one line each, as ``core.errors.ServiceError``.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ServiceError
from core.output import Output
from core.proc import POLL_INTERVAL, alive, file_lock, last_line, runs, terminate
from core.settings import Settings

# -- readiness probes -------------------------------------------------------------------------------

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(
    url: str, timeout: float = 1.0, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
) -> bool:
    """True when a GET of a loopback URL answers 200 (https: with `tls`, e.g. a client certificate;
    `headers`, e.g. credentials)."""
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ValueError(f"readiness probes stay on loopback, not {url}")
    opener = (
        _OPENER
        if tls is None
        else urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
        )
    )
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


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
    # Something already answers on the address, in any of the ways it may (etcd: also the plain http
    # of an earlier version, which `ready` no longer accepts); None: `ready`.
    answers: Callable[[], bool] | None = None

    def occupied(self) -> bool:
        return (self.answers or self.ready)()


def pidfile(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def logfile(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def running_pid(service: Service, settings: Settings) -> int | None:
    """The PID from our pidfile if that process is alive and still runs the program we started."""
    pid = read_pid(pidfile(settings, service.name))
    if pid is None or not alive(pid):
        return None
    return pid if runs(pid, service.argv[0]) else None


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
        if service.occupied():
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
        pid = read_pid(path)
        if pid is None or not alive(pid) or not runs(pid, service.argv[0]):
            path.unlink(missing_ok=True)
            out.detail(f"{service.name} was not running (removed a stale pidfile)")
            return False
        out.step(f"Stopping {service.name} (pid {pid})")
        terminate(pid, grace, service.name)
        path.unlink(missing_ok=True)
        return True


def is_running(service: Service, settings: Settings) -> bool:
    """Ours runs and answers."""
    return running_pid(service, settings) is not None and service.ready()


# -- running processes (internal) ---------------------------------------------------------------


def _lock(settings: Settings, name: str) -> contextlib.AbstractContextManager[None]:
    return file_lock(settings.run_dir / f"{name}.lock")


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
        if code is not None or (proc is None and not alive(pid)):
            why = f"exited with status {code}" if code is not None else "exited"
            raise ServiceError(f"{service.name} {why} before it was ready: {last_line(log)} (see {log})")
        if time.monotonic() >= deadline:
            where = service.address or "its address"
            if proc is None:  # not started by this call: report, leave it to `down`
                raise ServiceError(
                    f"{service.name} (pid {pid}) runs but did not answer on {where} within {timeout:g} s;"
                    f" stop it and start again (see {log})"
                )
            terminate(pid, 5.0, service.name)
            proc.poll()
            raise ServiceError(
                f"{service.name} was not ready on {where} after {timeout:g} s; stopped it:"
                f" {last_line(log)} (see {log})"
            )
        time.sleep(POLL_INTERVAL)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
