"""A single-node swarm on the shared dockerd for the tests that need one. The swarm state is the
engine's, not the test's: join only when the engine is in none, and leave only a swarm we made."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker


def state(client: docker.DockerClient) -> str:
    return str((client.info().get("Swarm") or {}).get("LocalNodeState") or "inactive")


@contextlib.contextmanager
def single_node_swarm() -> Iterator[docker.DockerClient]:
    """The engine as a swarm manager advertising 127.0.0.1 (so tasks' endpoints are loopback ones)."""
    client = docker.from_env()
    made = state(client) != "active"
    if made:
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    try:
        yield client
    finally:
        if made:
            client.swarm.leave(force=True)
