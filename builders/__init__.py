"""Turning a pushed commit into an image in the platform registry.

`build()` exports the commit, picks the build kind (a Dockerfile at the top: a docker build; else
a buildpack build, `builders.buildpack`) and returns a `releaser.releases.Build`; it knows nothing
about releases beyond that record, nor about routing. A Procfile's `release` type is not a process
type: it is kept apart as the build's release command (run once per release, before the rollout).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import docker
import docker.errors

from appliance.errors import ServiceError
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
    if "Dockerfile" not in files:
        return build_slug(settings, app, repo, sha, by, out, config or {})
    procfile_text = source.read_file(repo, sha, "Procfile") if "Procfile" in files else None
    procfile = source.parse_procfile(procfile_text) if procfile_text else {}
    release = procfile.pop("release", "")
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
        image=tag,
        kind="dockerfile",
        sha=sha,
        procfile=procfile,
        port=port,
        created=time.time(),
        by=by,
        release=release,
    )


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
        dockerfile.build_image(client, context, tag, lambda line: None)
        out.detail(f"{tag} built in {time.monotonic() - started:.1f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    dockerfile.push_image(client, tag)
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")
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
