"""Health checks (Deis v1's config vars): a new container is routed only once it passes.

Without HEALTHCHECK_URL the check is that the container accepts TCP connections on $PORT; with it,
GET that path must answer 200. The check starts after HEALTHCHECK_INITIAL_DELAY seconds and must
pass within HEALTHCHECK_TIMEOUT seconds (the platform default if unset). A container that exits
fails at once.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from appliance.errors import HealthCheckFailed, ValidationError
from scheduler.base import Backend, Instance


@dataclass(frozen=True)
class HealthCheck:
    url: str | None = None
    timeout: float = 30.0
    initial_delay: float = 0.0
    interval: float = 0.1

    @classmethod
    def from_config(cls, config: dict[str, str], default_timeout: float) -> HealthCheck:
        def number(key: str, default: float) -> float:
            raw = config.get(key)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError as exc:
                raise ValidationError(f"{key} must be a number of seconds, not {raw!r}") from exc
            if value < 0:
                raise ValidationError(f"{key} must not be negative")
            return value

        url = config.get("HEALTHCHECK_URL") or None
        if url is not None and not url.startswith("/"):
            raise ValidationError(f"HEALTHCHECK_URL must be a path starting with '/', not {url!r}")
        return cls(
            url=url,
            timeout=number("HEALTHCHECK_TIMEOUT", default_timeout),
            initial_delay=number("HEALTHCHECK_INITIAL_DELAY", 0.0),
        )

    def describe(self) -> str:
        return f"GET {self.url} answers 200" if self.url else "accepts TCP connections on $PORT"


def _http_status(endpoint: str, path: str, timeout: float) -> str:
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "deis-healthcheck"})
        resp = conn.getresponse()
        resp.read(65536)
        return str(resp.status)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def wait_healthy(backend: Backend, instance: Instance, check: HealthCheck) -> None:
    """Return once `instance` passes `check`; raise HealthCheckFailed (with its log tail) otherwise."""
    if check.initial_delay:
        time.sleep(check.initial_delay)
    deadline = time.monotonic() + check.timeout
    last = "no answer yet"
    while True:
        current = backend.inspect(str(instance.name))
        if current is None or current.state in ("exited", "dead") or current.restarts:
            # The restart policy would hide a crash loop behind "restarting": the first exit counts.
            state = "was removed" if current is None else "exited"
            raise HealthCheckFailed(
                _failure(backend, instance, f"the container {state} before it was healthy")
            )
        if current.running and current.endpoint:
            if check.url is None:
                if backend.listening(current):
                    return
                last = "nothing listening on $PORT"
            else:
                last = _http_status(current.endpoint, check.url, timeout=max(0.5, min(5.0, check.timeout)))
                if last == "200":
                    return
                last = f"got {last}"
        if time.monotonic() >= deadline:
            raise HealthCheckFailed(
                _failure(
                    backend, instance, f"not healthy after {check.timeout:g}s: {check.describe()} ({last})"
                )
            )
        time.sleep(check.interval)


def _failure(backend: Backend, instance: Instance, why: str) -> str:
    tail = backend.logs(str(instance.name), tail=15).rstrip()
    text = f"{instance.name} failed its health check: {why}"
    if tail:
        text += "\nlast lines of its log:\n" + tail
    return text
