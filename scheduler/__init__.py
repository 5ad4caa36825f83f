"""Where apps' processes run: one small backend interface (base), its backends, health checks and
the rollout every deploy goes through.

    base           Backend, ProcessSpec, Instance, Stdio: the seam
    docker         the default backend: containers on the local dockerd
    swarm          services on Docker Swarm mode (swarmspec: their shape), one per instance
    memory         instances as records, for tests
    health         what healthy means (TCP or HTTP), and waiting for it
    rollout        start new, check health, retire old; scale plans
    release_phase  the Procfile's `release:` command, once per release

`create(name, ...)` is the one place a backend is chosen by name (the platform keeps the name in
etcd, as Deis v1 kept `schedulerModule`).
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import ValidationError
from scheduler.base import Backend

# The backends an operator may choose. (`memory` is for tests and is built directly.)
CHOICES = ("docker", "swarm")


def create(
    name: str, *, platform: str, home: str = "", registry_auth: Callable[[], dict[str, str]] | None = None
) -> Backend:
    """The backend called `name`, for the platform whose containers carry label `platform`;
    `registry_auth` gives the platform registry's credentials for a pull."""
    if name == "docker":
        from scheduler.docker import DockerBackend

        return DockerBackend(platform, home=home, registry_auth=registry_auth)
    if name == "swarm":
        from scheduler.swarm import SwarmBackend

        return SwarmBackend(platform, registry_auth=registry_auth)
    raise ValidationError(f"unknown scheduler {name!r}; choose {' or '.join(CHOICES)}")
