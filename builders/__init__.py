"""Turning a pushed commit into an image in the platform registry.

`build()` exports the commit, picks the build kind (a Dockerfile at the top: a docker build; else
a buildpack build, `builders.buildpack`) and returns a `releaser.releases.Build`; it knows nothing
about releases beyond that record, nor about routing. A Procfile's `release` type is not a process
type: it is kept apart as the build's release command (run once per release, before the rollout).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.errors

from appliance.errors import BuildError, ServiceError
from appliance.output import Output
from appliance.settings import Settings
from builders import buildpack, dockerfile, source, stacks
from releaser.releases import Build

DEFAULT_PORT = 5000


def image_name(settings: Settings, app: str, sha: str) -> str:
    return f"{settings.registry}/{app}:git-{sha[:8]}"


def docker_client() -> docker.DockerClient:
    try:
        return docker.from_env(timeout=600)
    except docker.errors.DockerException as exc:
        raise ServiceError(f"docker is unreachable: {exc}") from exc


def build(
    settings: Settings,
    app: str,
    repo: Path,
    sha: str,
    by: str,
    out: Output,
    config: dict[str, str] | None = None,
) -> Build:
    """A Dockerfile build when the tree has one at its top, else a buildpack build (with `config`)."""
    files = source.top_level_files(repo, sha)
    healthchecks = app_json_healthchecks(
        source.read_file(repo, sha, "app.json") if "app.json" in files else None
    )
    if "Dockerfile" not in files:
        return replace(build_slug(settings, app, repo, sha, by, out, config or {}), healthchecks=healthchecks)
    procfile_text = source.read_file(repo, sha, "Procfile") if "Procfile" in files else None
    procfile = source.parse_procfile(procfile_text) if procfile_text else {}
    release = procfile.pop("release", "")
    tag = image_name(settings, app, sha)
    client = docker_client()
    out.step("Building Docker image (Dockerfile)")
    dockerfile.build_image(client, source.archive(repo, sha), tag, out.detail, str(settings.state_dir))
    port = dockerfile.exposed_port(client, tag) or DEFAULT_PORT
    push(settings, client, tag, out)
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
        release=release,
    )


def push(settings: Settings, client: docker.DockerClient, tag: str, out: Output) -> None:
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    dockerfile.push_image(client, tag)
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")


def build_slug(
    settings: Settings, app: str, repo: Path, sha: str, by: str, out: Output, config: dict[str, str]
) -> Build:
    """The buildpack build: compile a slug in the slugbuilder, then slugrunner + slug as the image."""
    tag = image_name(settings, app, sha)
    work = buildpack.workspace(settings)
    try:
        slug = buildpack.compile_slug(settings, app, repo, sha, config, work, out)
        client = docker_client()
        out.step("Building the app image (slugrunner + slug)")
        started = time.monotonic()
        context = buildpack.slug_context(slug.path, stacks.RUNNER_IMAGE)
        dockerfile.build_image(client, context, tag, lambda line: None, str(settings.state_dir))
        out.detail(f"{tag} built in {time.monotonic() - started:.1f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    push(settings, client, tag, out)
    procfile = dict(slug.procfile)
    release = procfile.pop("release", "")
    return Build(
        image=tag,
        kind="buildpack",
        sha=sha,
        procfile=procfile,
        port=DEFAULT_PORT,
        created=time.time(),
        by=by,
        release=release,
        runner=True,
        slug_size=slug.size,
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
