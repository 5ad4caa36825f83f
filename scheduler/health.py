"""Health checks: a new container is routed only once it passes.

Sources, weakest first: the platform default (a TCP connect to $PORT within the platform's timeout);
app.json `healthchecks.web` (Dokku's format: path, content, attempts, timeout, wait, initialDelay); the
app's config vars (Deis v1): HEALTHCHECK_URL, HEALTHCHECK_TIMEOUT (seconds to become healthy),
HEALTHCHECK_INITIAL_DELAY, plus HEALTHCHECK_INTERVAL (seconds between probes) and HEALTHCHECK_ATTEMPTS
(probes before giving up). A container that exits fails at once.

TCP checks are the backend's own `probe` (the docker backend looks inside the container: through
docker-proxy a connect always succeeds, listening or not); HTTP checks GET the endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from core.errors import HealthCheckFailed, ValidationError
from scheduler.base import Backend, Instance

# The most one HTTP probe may take, whatever app.json asks for: a probe holds a thread.
MAX_PROBE_TIMEOUT = 30.0


@dataclass(frozen=True)
class HealthCheck:
    url: str | None = None
    timeout: float = 30.0  # seconds the container has to become healthy
    initial_delay: float = 0.0
    interval: float = 0.05  # between probes
    attempts: int | None = None  # probes before giving up (None: until `timeout`)
    probe_timeout: float = 5.0  # one HTTP probe
    content: str | None = None  # the body must contain this

    @classmethod
    def from_config(
        cls, config: dict[str, str], default_timeout: float, app_json: list[dict[str, Any]] | None = None
    ) -> HealthCheck:
        check = cls(timeout=default_timeout)
        for entry in app_json or []:
            if entry.get("type", "startup") == "startup":
                check = _from_app_json(check, entry)
                break

        def number(key: str, current: float) -> float:
            raw = config.get(key)
            if raw is None or raw == "":
                return current
            try:
                value = float(raw)
            except ValueError as exc:
                raise ValidationError(f"{key} must be a number of seconds, not {raw!r}") from exc
            if value < 0:
                raise ValidationError(f"{key} must not be negative")
            return value

        url = config.get("HEALTHCHECK_URL") or check.url
        if url is not None and not url.startswith("/"):
            raise ValidationError(f"HEALTHCHECK_URL must be a path starting with '/', not {url!r}")
        attempts = number("HEALTHCHECK_ATTEMPTS", float(check.attempts or 0))
        return replace(
            check,
            url=url,
            timeout=number("HEALTHCHECK_TIMEOUT", check.timeout),
            initial_delay=number("HEALTHCHECK_INITIAL_DELAY", check.initial_delay),
            interval=number("HEALTHCHECK_INTERVAL", check.interval),
            attempts=int(attempts) or None,
        )

    def describe(self) -> str:
        if not self.url:
            return "accepts TCP connections on $PORT"
        return f"GET {self.url} answers 200" + (f" containing {self.content!r}" if self.content else "")


def _from_app_json(check: HealthCheck, entry: dict[str, Any]) -> HealthCheck:
    """Dokku's app.json check: `attempts` probes, `wait` apart, each within `timeout`."""
    try:
        path = entry.get("path")
        attempts = int(entry.get("attempts", 5))
        probe_timeout = float(entry.get("timeout", 5))
        wait = float(entry.get("wait", 1))
        delay = float(entry.get("initialDelay", 0))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"app.json healthchecks: {exc}") from exc
    if path is not None and not str(path).startswith("/"):
        raise ValidationError(f"app.json healthchecks: path must start with '/', not {path!r}")
    return replace(
        check,
        url=str(path) if path else None,
        attempts=attempts,
        probe_timeout=min(max(probe_timeout, 0.1), MAX_PROBE_TIMEOUT),
        interval=wait,
        initial_delay=delay,
        timeout=attempts * (probe_timeout + wait),
        content=str(entry["content"]) if entry.get("content") else None,
    )


def _http(endpoint: str, path: str, timeout: float) -> tuple[str, str]:
    """GET `path`: (status, start of the body). `timeout` bounds the whole exchange, not each
    read: an app that sends a byte now and then is cut off at the deadline (its socket is shut)."""
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    deadline = threading.Timer(timeout, _shut, args=(conn,))
    deadline.daemon = True
    deadline.start()
    try:
        conn.request("GET", path, headers={"User-Agent": "deis-healthcheck"})
        resp = conn.getresponse()
        return str(resp.status), resp.read(65536).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, ""
    finally:
        deadline.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def probe(
    backend: Backend, instance: Instance, check: HealthCheck, cap: float | None = None
) -> tuple[bool, str]:
    """One probe of a running container: (passed, what came back). `cap` bounds an HTTP probe's
    time below the check's own `probe_timeout` (the reconciler's hard limit)."""
    if not instance.running or not instance.endpoint:
        return False, f"container {instance.state}"
    if check.url is None:
        if backend.probe(instance):
            return True, "listening"
        return False, "nothing listening on $PORT"
    limit = check.probe_timeout if cap is None else min(cap, check.probe_timeout)
    status, body = _http(instance.endpoint, check.url, limit)
    if status != "200":
        return False, f"got {status}"
    if check.content and check.content not in body:
        return False, f"200 without {check.content!r}"
    return True, "200"


def wait_healthy(backend: Backend, instance: Instance, check: HealthCheck) -> None:
    """Return once `instance` passes `check`; raise HealthCheckFailed (with its log tail) otherwise."""
    if check.initial_delay:
        time.sleep(check.initial_delay)
    deadline = time.monotonic() + check.timeout
    last, tries = "no answer yet", 0
    while True:
        current = backend.inspect(instance.id)
        if current is None or current.state in ("exited", "dead") or current.restarts:
            # The restart policy would hide a crash loop behind "restarting": the first exit counts.
            state = "was removed" if current is None else "exited"
            raise HealthCheckFailed(
                _failure(backend, instance, f"the container {state} before it was healthy")
            )
        if current.running:
            tries += 1
            ok, last = probe(backend, current, check)
            if ok:
                return
        out_of_tries = check.attempts is not None and tries >= check.attempts
        if time.monotonic() >= deadline or out_of_tries:
            spent = f"{tries} attempts" if out_of_tries else f"{check.timeout:g}s"
            why = f"not healthy after {spent}: {check.describe()} ({last})"
            raise HealthCheckFailed(_failure(backend, instance, why))
        time.sleep(check.interval)


def _failure(backend: Backend, instance: Instance, why: str) -> str:
    tail = backend.log_tail(instance.id, lines=15).rstrip()
    text = f"{instance.name} failed its health check: {why}"
    if tail:
        text += "\nlast lines of its log:\n" + tail
    return text


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
