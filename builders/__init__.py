"""Turning a pushed commit into an image in the platform registry.

`build()` reads the commit, picks the build kind (a Dockerfile at the top: a docker build; else a
buildpack build, `builders.buildpack`) and returns a `core.records.Build`; it knows nothing about
releases, containers or routing. A Procfile's `release` type is not a process type: it is kept
apart as the build's release command (run once per release, before the rollout).

    source     the pushed commit (git, with the hook's quarantine environment)
    dockerfile reading a Dockerfile: checks, cache-mount ids, base images (and the engine build's arguments)
    dockerbuild the Dockerfile build with buildah: context, bases, build args and secrets, push
    buildah    buildah command lines (pure)
    buildnet   the build's own network namespace: ip/iptables command lines and their set-up
    buildpack  the Heroku buildpack API: slugbuilder, slug, slugrunner image
    engine     the docker engine: build, push, labels, image removal
    registry   the platform registry's HTTP API (deleting an app's repository)
    image      `builds:create`: an image already in the registry as a Build
    images     images made from Debian packages (debootstrap + docker import)
    stacks     the stack, slugbuilder and slugrunner images
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from typing import Any

from builders import buildpack, dockerbuild, engine, source, stacks
from core.errors import BuildError
from core.output import Output
from core.records import Build, Push
from core.settings import Settings

DEFAULT_PORT = 5000


def image_name(settings: Settings, app: str, sha: str) -> str:
    return f"{settings.registry}/{app}:git-{sha[:8]}"


def build(settings: Settings, push: Push, out: Output, config: dict[str, str] | None = None) -> Build:
    """A Dockerfile build when the tree has one at its top, else a buildpack build (with `config`)."""
    src = source.Source.of(push)
    files = src.top_level_files()
    healthchecks = app_json_healthchecks(src.read_file("app.json") if "app.json" in files else None)
    if "Dockerfile" not in files:
        slug = build_slug(settings, push, out, config or {})
        return replace(slug, healthchecks=healthchecks)
    procfile_text = src.read_file("Procfile") if "Procfile" in files else None
    procfile = source.parse_procfile(procfile_text) if procfile_text else {}
    release = procfile.pop("release", "")
    out.step("Building Docker image (Dockerfile)")
    tag, port = build_image(settings, push, src, config or {}, out)
    if procfile:
        out.detail(f"Procfile declares types -> {', '.join(sorted(procfile))}")
    return Build(
        image=tag,
        kind="dockerfile",
        sha=push.sha,
        procfile=procfile,
        port=port or DEFAULT_PORT,
        created=time.time(),
        by=push.user,
        healthchecks=healthchecks,
        release=release,
    )


def build_image(
    settings: Settings, push: Push, src: source.Source, config: dict[str, str], out: Output
) -> tuple[str, int | None]:
    """The Dockerfile build: buildah in its own network namespace (or, when the operator chose it,
    the engine's legacy builder, which has no isolation); (image in the registry, exposed port)."""
    tag = image_name(settings, push.app, push.sha)
    if settings.dockerfile_builder == "docker":
        engine.build(src.archive(), tag, out.detail, str(settings.state_dir))
        port = engine.exposed_port(tag)
        push_image(settings, tag, out)
        return tag, port
    return dockerbuild.build(settings, src, push.app, tag, config, out)


def purge_cache(settings: Settings, app: str) -> int:
    """`builds:purge-cache`: the buildpack cache and the Dockerfile cache mounts; bytes freed."""
    return buildpack.purge_cache(settings, app) + dockerbuild.purge_cache(settings, app)


def wait_pushed(image: str, out: Output) -> None:
    """Before anything serves `image`: its background push (if one runs) has finished; its error
    otherwise, so a release is never recorded with an image the registry lacks."""
    took = engine.wait_pushed(image)
    if took is not None:
        out.detail(f"{image} pushed in {took:.1f}s")


def push_image(settings: Settings, tag: str, out: Output) -> None:
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    engine.push(tag, settings.registry_auth().auth_config())
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")


def build_slug(settings: Settings, push: Push, out: Output, config: dict[str, str]) -> Build:
    """The buildpack build: compile a slug in the slugbuilder, then slugrunner + slug as the image."""
    tag = image_name(settings, push.app, push.sha)
    work = buildpack.workspace(settings)
    try:
        slug = buildpack.compile_slug(settings, source.Source.of(push), push.app, config, work, out)
        out.step("Building the app image (slugrunner + slug)")
        started = time.monotonic()
        context = buildpack.slug_context(slug.path, stacks.RUNNER_IMAGE)
        engine.build(context, tag, lambda line: None, str(settings.state_dir))
        out.detail(f"{tag} built in {time.monotonic() - started:.1f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The engine has the image: the launch need not wait for the registry (the router switch does).
    out.step(f"Pushing image to {settings.registry} (beside the launch)")
    engine.push_beside(tag, settings.registry_auth().auth_config())
    procfile = dict(slug.procfile)
    release = procfile.pop("release", "")
    return Build(
        image=tag,
        kind="buildpack",
        sha=push.sha,
        procfile=procfile,
        port=DEFAULT_PORT,
        created=time.time(),
        by=push.user,
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
    removed = engine.remove_images(f"{settings.registry}/{app}", frozenset(keep))
    engine.prune_dangling(str(settings.state_dir))
    return removed


def forget(settings: Settings, app: str, keep: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Every image of `app` but those in `keep` (other apps deployed them with builds:create): its
    local tags, then its registry repository; (local, registry) tags removed. Its build cache goes
    too: the next owner of the name must not get it."""
    from builders import registry

    repo = f"{settings.registry}/{app}"
    local = engine.remove_images(repo, keep, force=True)
    kept = frozenset(ref[len(repo) + 1 :] for ref in keep if ref.startswith((f"{repo}:", f"{repo}@")))
    tags = registry.delete_repository(settings, app, kept)
    buildpack.purge_cache(settings, app)
    dockerbuild.forget(settings, app)
    return local, tags
