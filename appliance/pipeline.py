"""The deploy pipeline: the only place that composes builders, releaser, scheduler and routerconf.

    deploy(push)      = build -> cut the release -> roll_out
    roll_out(release) = release phase (Procfile `release:`, if any) -> launch new, healthy
                        -> switch the router, record the release -> retire old

`config:set`, `limits:set`, `releases:rollback`, `builds:create` cut a release and call
`roll_out` too; `scale` and `ps:restart` (appliance.operations) reuse its parts. Callers hold the
app's lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import builders
from appliance import addons, storage
from appliance.collector import Recorded
from appliance.platform import Platform
from builders import source
from core.errors import ValidationError
from core.names import memory_bytes
from core.output import Output
from core.records import Build, Push, Release
from releaser import apps, domains, events, locks, releases
from releaser.logstore import Line
from routerconf.site import Cert, Site
from scheduler import release_phase, rollout
from scheduler.base import Instance
from scheduler.health import HealthCheck

log = logging.getLogger("deis.pipeline")


def deploy(p: Platform, push: Push, out: Output) -> Release:
    started = time.monotonic()
    current = releases.latest(p.store, push.app)
    # A few MB of pack may unpack to gigabytes: refused before anything is exported.
    source.Source.of(push).check_size(p.settings.max_push_bytes)
    recorded = Recorded(out, p.logs, push.app, "build")  # kept in the app's logs too
    build = builders.build(p.settings, push, recorded, config=current.config if current else {})
    summary = f"{push.user} deployed {push.sha[:7]}"
    try:
        release = releases.prepare(p.store, push.app, by=push.user, summary=summary, build=build)
        roll_out(p, release, out)
    except BaseException:
        with contextlib.suppress(Exception):  # a failed deploy still reaps its background push
            builders.wait_pushed(build.image, out)
        raise
    out.detail(f"deployed in {time.monotonic() - started:.1f}s")
    return release


def roll_out(p: Platform, release: Release, out: Output) -> Release:
    """Bring `release` up beside the running one, switch traffic to it, then retire the old one.

    Until the router switches, the old release serves; on any failure before that, the new
    instances are removed, the release is not recorded and the error goes up.
    """
    if release.build is None:
        # Nothing built yet (config set before the first push): the release is just recorded.
        releases.record(p.store, release)
        events.record(p.store, release.app, release.by, f"{release.summary}: v{release.version} recorded")
        out.step(f"{release.app}:v{release.version} recorded; it runs once code is pushed")
        return release
    before = apps.get_formation(p.store, release.app)
    deployment = deployment_for(p, release)
    if deployment.release_command:
        out.step(f"Running release command: {deployment.release_command}")
        release_phase.run(p.backend, deployment, _relay(p, release, out), p.settings.release_timeout)
    out.step(f"Launching {release.app}:v{release.version} ({describe(deployment.formation)})")
    instances = rollout.launch(p.backend, deployment, out.detail)
    switch(p, release, instances, out)
    try:
        settle(p, release, deployment.formation, before, out)
    except (Exception, KeyboardInterrupt) as exc:
        # The release is live and recorded: what is left is housekeeping, which the reconciler
        # finishes (stale instances), so the push must not be reported as failed.
        log.warning("after deploying %s v%s: %s", release.app, release.version, exc)
    return release


def _relay(p: Platform, release: Release, out: Output) -> Callable[[str], None]:
    """Where the release phase's lines go: to the deployer, and to the app's logs as `release`."""

    def emit(text: str) -> None:
        out.detail(text)
        p.logs.append(release.app, [Line(time.time(), "release", release.version, text)])

    return emit


def switch(p: Platform, release: Release, instances: list[Instance], out: Output) -> None:
    """Point the router at the new instances and record the release; on any failure, give the
    traffic back to the instances of the release that still runs and remove the new ones."""
    app = release.app
    switched = False
    try:
        if release.build is not None:
            builders.wait_pushed(release.build.image, out)
        out.step("Switching the router")
        locks.ensure_held(app)
        switched = True  # from here on the router may point at the new instances
        publish(p, app, rollout.endpoints(instances))
        releases.record(p.store, release)
    except BaseException:
        try:
            if switched:
                new = {i.id for i in instances}
                publish(p, app, rollout.endpoints([i for i in p.backend.instances(app) if i.id not in new]))
        finally:
            rollout.stop_all(p.backend, [i.id for i in instances], 0)
        raise


def settle(
    p: Platform, release: Release, formation: dict[str, int], before: dict[str, int], out: Output
) -> None:
    """Housekeeping once `release` serves: formation, event, retire the old release, image GC."""
    app = release.app
    if formation != before:  # only once the release runs: a failed deploy changes nothing
        apps.set_formation(p.store, app, formation)
    events.record(p.store, app, release.by, f"{release.summary}: v{release.version} deployed")
    retired = rollout.retire(p.backend, app, release.version, p.settings.stop_grace)
    if retired:
        out.detail(f"retired {', '.join(retired)}")
    collect_garbage(p, app)
    out.step(f"done, {app}:v{release.version} deployed")
    out.detail(p.settings.app_url(app))


def collect_garbage(p: Platform, app: str) -> None:
    """Keep the images of the app's last `keep_images` releases on the host."""
    recent = releases.list_releases(p.store, app)[: p.settings.keep_images]
    builders.collect_garbage(p.settings, app, {r.build.image for r in recent if r.build})


def deployment_for(
    p: Platform, release: Release, formation: dict[str, int] | None = None
) -> rollout.Deployment:
    """What the scheduler runs for `release`, at `formation` or the app's current one."""
    build = release.build
    assert build is not None
    if formation is None:
        formation = fit_formation(build, apps.get_formation(p.store, release.app))
    return rollout.Deployment(
        app=release.app,
        version=release.version,
        image=build.image,
        procfile=build.procfile,
        port=port(release),
        config=release.config,
        formation=formation,
        health=HealthCheck.from_config(
            release.config,
            p.settings.healthcheck_timeout,
            build.healthchecks.get("web") or build.healthchecks.get("cmd"),
        ),
        memory={t: memory_bytes(v) for t, v in release.memory.items()},
        default_memory=p.settings.default_memory or None,
        pids_limit=p.settings.default_pids_limit or None,
        cpu=release.cpu,
        runner=build.runner,
        release_command=build.release,
        networks=addons.networks(p, release.app),
        mounts=storage.mounts(p, release.app, list(build.process_types)),
        placement=tuple(sorted(release.tags.items())),
    )


def fit_formation(build: Build, formation: dict[str, int]) -> dict[str, int]:
    """The formation to run `build` with: the app's, unless none of its types exist in this build
    (first deploy, or a rollback / image import across Procfile changes), then the build's default."""
    if any(t in build.process_types for t in formation):
        return formation
    return build.default_formation()


def publish(p: Platform, app: str, endpoints: list[str]) -> None:
    """Point the router at `endpoints`, with the app's domains, certificate and router settings from
    etcd: the one place the composition talks to routerconf.

    The endpoints are recorded too, so the reconciler (and `republish`) know what the router was
    last told.
    """
    state = domains.site(p.store, app)
    cert = Cert(str(state.cert["chain"]), str(state.cert["key"])) if state.cert else None
    p.router.publish(
        app,
        endpoints,
        Site(domains=tuple(state.domains), cert=cert, options=state.options, challenges=state.challenges),
    )
    apps.set_routes(p.store, app, endpoints)


def published(p: Platform, app: str) -> list[str] | None:
    return apps.get_routes(p.store, app)


def republish(p: Platform, app: str) -> None:
    """Render APP's router block again (a domain, certificate or router setting changed) with the
    endpoints the router has now. Callers hold the app's lock."""
    endpoints = published(p, app)
    if endpoints is None:
        endpoints = rollout.endpoints(p.backend.instances(app))
    publish(p, app, endpoints)


def port(release: Release) -> int:
    assert release.build is not None
    raw = release.config.get("PORT")
    if raw is None:
        return release.build.port
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValidationError(f"config var PORT must be a TCP port number, not {raw!r}")
    return int(raw)


def describe(formation: dict[str, int]) -> str:
    return ", ".join(f"{t}={n}" for t, n in sorted(formation.items())) or "scaled to zero"
