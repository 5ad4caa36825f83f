"""Turning a pushed commit into an image in the platform registry.

`build()` exports the commit, picks the build kind and returns a `releaser.releases.Build`; it
knows nothing about releases beyond that record, nor about routing.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import docker.errors

from appliance.errors import BuildError, ServiceError
from appliance.output import Output
from appliance.settings import Settings
from builders import dockerfile, source
from releaser.releases import Build

DEFAULT_PORT = 5000


def image_name(settings: Settings, app: str, sha: str) -> str:
    return f"{settings.registry}/{app}:git-{sha[:8]}"


def docker_client() -> docker.DockerClient:
    try:
        return docker.from_env(timeout=600)
    except docker.errors.DockerException as exc:
        raise ServiceError(f"docker is unreachable: {exc}") from exc


def build(settings: Settings, app: str, repo: Path, sha: str, by: str, out: Output) -> Build:
    files = source.top_level_files(repo, sha)
    procfile_text = source.read_file(repo, sha, "Procfile") if "Procfile" in files else None
    procfile = source.parse_procfile(procfile_text) if procfile_text else {}
    if "Dockerfile" not in files:
        raise BuildError(
            "no Dockerfile at the top of the pushed tree: add one (for example FROM "
            f"{settings.stack_image}); buildpack builds are not available yet"
        )
    tag = image_name(settings, app, sha)
    client = docker_client()
    out.step("Building Docker image (Dockerfile)")
    dockerfile.build_image(client, source.archive(repo, sha), tag, out.detail)
    port = dockerfile.exposed_port(client, tag) or DEFAULT_PORT
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    dockerfile.push_image(client, tag)
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")
    if procfile:
        out.detail(f"Procfile declares types -> {', '.join(sorted(procfile))}")
    return Build(
        image=tag, kind="dockerfile", sha=sha, procfile=procfile, port=port, created=time.time(), by=by
    )
