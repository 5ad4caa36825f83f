"""Turning a pushed commit into an image in the platform registry.

`build()` exports the commit, picks the build kind and returns a `releaser.releases.Build`; it
knows nothing about releases beyond that record, nor about routing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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
    healthchecks = app_json_healthchecks(
        source.read_file(repo, sha, "app.json") if "app.json" in files else None
    )
    if "Dockerfile" not in files:
        raise BuildError(
            "no Dockerfile at the top of the pushed tree: add one (for example FROM "
            f"{settings.stack_image}); buildpack builds are not available yet"
        )
    tag = image_name(settings, app, sha)
    client = docker_client()
    out.step("Building Docker image (Dockerfile)")
    dockerfile.build_image(client, source.archive(repo, sha), tag, out.detail, str(settings.state_dir))
    port = dockerfile.exposed_port(client, tag) or DEFAULT_PORT
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    dockerfile.push_image(client, tag)
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")
    if procfile:
        out.detail(f"Procfile declares types -> {', '.join(sorted(procfile))}")
    return Build(
        image=tag,
        kind="dockerfile",
        sha=sha,
        procfile=procfile,
        port=port,
        created=time.time(),
        by=by,
        healthchecks=healthchecks,
    )


def app_json_healthchecks(text: str | None) -> dict[str, list[dict[str, Any]]]:
    """app.json's `healthchecks` ({"web": [{"path": "/health", ...}]}), checked for shape."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BuildError(f"app.json is not valid JSON: {exc}") from exc
    checks = data.get("healthchecks", {}) if isinstance(data, dict) else None
    if not isinstance(checks, dict) or not all(
        isinstance(v, list) and all(isinstance(e, dict) for e in v) for v in checks.values()
    ):
        raise BuildError('app.json "healthchecks" must map process types to lists of checks')
    return checks


def collect_garbage(settings: Settings, app: str, keep: set[str]) -> list[str]:
    """Remove the app's local images not in `keep` (the registry keeps every one: an old release
    is pulled again on rollback) and this platform's dangling build images. Returns what went."""
    client = docker_client()
    removed = []
    repo = f"{settings.registry}/{app}"
    for image in client.images.list(name=repo):
        for tag in image.tags:
            if tag.startswith(f"{repo}:") and tag not in keep:
                try:
                    client.images.remove(tag)
                    removed.append(tag)
                except docker.errors.APIError:
                    pass  # still used by a container: next time
    try:
        client.images.prune(filters={"dangling": True, "label": f"io.deis.platform={settings.state_dir}"})
    except docker.errors.APIError:
        pass  # another prune is running
    return removed
