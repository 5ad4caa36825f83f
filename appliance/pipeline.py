"""The deploy pipeline: the only place that composes builders, releaser, scheduler and routerconf.

    deploy(commit)   = build -> prepare release -> roll_out
    roll_out(release) = release phase (Procfile `release:`, if any) -> launch new (healthy)
                        -> record release -> switch router -> retire old

`config:set`, `releases:rollback`, `scale` and friends prepare a release (or formation) and call
`roll_out` too. Callers hold the app's lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import builders
from appliance.errors import DeisError, NotFound, ValidationError
from appliance.output import Output
from appliance.settings import Settings
from releaser import apps, domains, events, locks, releases
from releaser.releases import Build, Release
from releaser.store import Store
from routerconf import Router
from routerconf.site import Cert, Site
from scheduler import release_phase, rollout
from scheduler.base import Backend, ContainerSpec
from scheduler.docker import DockerBackend
from scheduler.health import HealthCheck

log = logging.getLogger("deis.pipeline")


@dataclass
class Platform:
    """The wired-up parts of one platform (one state dir)."""

    settings: Settings
    store: Store
    backend: Backend
    router: Router

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        return cls(
            settings=settings,
            store=Store(settings.etcd_url),
            backend=DockerBackend(platform=str(settings.state_dir)),
            router=Router(settings),
        )


def deploy(p: Platform, app: str, repo: Path, sha: str, user: str, out: Output) -> Release:
    started = time.monotonic()
    current = releases.latest(p.store, app)
    config = current.config if current is not None else {}
    build = builders.build(p.settings, app, repo, sha, user, out, config=config)
    release = releases.prepare(p.store, app, by=user, summary=f"{user} deployed {sha[:7]}", build=build)
    roll_out(p, release, out)
    out.detail(f"deployed in {time.monotonic() - started:.1f}s")
    return release


def roll_out(p: Platform, release: Release, out: Output) -> Release:
    """Bring `release` up beside the running one, switch traffic to it, then retire the old one.

    Until the router switches, the old release serves; on any failure before that, the new
    containers are removed, the release is not recorded and the error goes up.
    """
    app = release.app
    build = release.build
    if build is None:
        # Nothing built yet (config set before the first push): the release is just recorded.
        releases.record(p.store, release)
        events.record(p.store, app, release.by, f"{release.summary}: v{release.version} recorded")
        out.step(f"{app}:v{release.version} recorded; it runs once code is pushed")
        return release
    current = apps.get_formation(p.store, app)
    deployment = deployment_for(p, release)
    formation = deployment.formation
    if build.release:
        out.step(f"Running release command: {build.release}")
        release_phase.run(p.backend, deployment, out.detail)
    out.step(f"Launching {app}:v{release.version} ({_describe(formation)})")
    instances = rollout.launch(p.backend, deployment, out.detail)
    switched = False
    try:
        out.step("Switching the router")
        locks.ensure_held(app)
        switched = True  # from here on the router may point at the new containers
        publish(p, app, rollout.endpoints(instances))
        releases.record(p.store, release)
    except BaseException:
        try:
            if switched:  # give the traffic back to the release that is still running
                old = [i for i in p.backend.instances(app) if i.name.version != release.version]
                publish(p, app, rollout.endpoints(old))
        finally:
            for inst in instances:
                p.backend.stop(str(inst.name), 0)
        raise
    try:
        _settle(p, release, formation, current, out)
    except (Exception, KeyboardInterrupt) as exc:
        # The release is live and recorded: what is left is housekeeping, which the reconciler
        # finishes (stale containers), so the push must not be reported as failed.
        log.warning("after deploying %s v%s: %s", app, release.version, exc)
    return release


def _settle(
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
        port=_port(release),
        config=release.config,
        formation=formation,
        health=HealthCheck.from_config(
            release.config,
            p.settings.healthcheck_timeout,
            build.healthchecks.get("web") or build.healthchecks.get("cmd"),
        ),
        memory=release.memory,
        cpu=release.cpu,
        runner=build.runner,
        release_command=build.release,
    )


def fit_formation(build: Build, formation: dict[str, int]) -> dict[str, int]:
    """The formation to run `build` with: the app's, unless none of its types exist in this build
    (first deploy, or a rollback / image import across Procfile changes), then the build's default."""
    if any(t in build.process_types for t in formation):
        return formation
    return build.default_formation()


def destroy(p: Platform, app: str, out: Output) -> None:
    """Remove every trace of `app`: route, containers, images (local and registry), repo, etcd state.

    Each step is idempotent and etcd goes last, so a destroy that fails half-way leaves an app that
    still exists and can be destroyed again. The caller holds the app's lock.
    """
    from builders import buildpack, registry  # destroy-only needs
    from gitserver import repos

    out.step(f"Destroying {app}")
    # Nothing may bring containers back while we remove them: every type at zero (an empty
    # formation would mean "never scaled", which the reconciler fills with the build's default).
    current = releases.latest(p.store, app)
    types = current.build.process_types if current and current.build else ["cmd", "web"]
    apps.set_formation(p.store, app, dict.fromkeys(types, 0))
    p.router.remove(app)
    out.detail("router entry removed")
    names = [str(i.name) for i in p.backend.instances(app)] + [n for _, n in p.backend.strays(app)]
    for name in names:
        p.backend.stop(name, p.settings.stop_grace)
    out.detail(f"removed containers: {', '.join(names)}" if names else "no containers")
    local = registry.remove_local_images(builders.docker_client(), p.settings, app)
    out.detail(f"removed local images: {', '.join(local)}" if local else "no local images")
    tags = registry.delete_repository(p.settings, app)
    out.detail(f"deleted from the registry: {', '.join(tags)}" if tags else "nothing in the registry")
    repos.remove_repo(p.settings, app)
    buildpack.purge_cache(p.settings, app)  # the next owner of the name must not get this build cache
    domains.forget_app(p.store, app)
    apps.destroy_app(p.store, app)
    out.detail("repository and state removed")
    out.step(f"done, {app} destroyed")


def publish(p: Platform, app: str, endpoints: list[str]) -> None:
    """Point the router at `endpoints`, with the app's domains, certificate and router settings from
    etcd: the one place the pipeline talks to routerconf.

    The endpoints are recorded too, so the reconciler (and `republish`) know what the router was
    last told.
    """
    state = domains.site(p.store, app)
    cert = Cert(str(state.cert["chain"]), str(state.cert["key"])) if state.cert else None
    p.router.publish(app, endpoints, Site(domains=tuple(state.domains), cert=cert, options=state.options))
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


def _port(release: Release) -> int:
    assert release.build is not None
    raw = release.config.get("PORT")
    if raw is None:
        return release.build.port
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValidationError(f"config var PORT must be a TCP port number, not {raw!r}")
    return int(raw)


def _describe(formation: dict[str, int]) -> str:
    return ", ".join(f"{t}={n}" for t, n in sorted(formation.items())) or "scaled to zero"


# -- the running release: scale, restart, one-off runs (no new release, as in Deis v1) -------------
def running_release(p: Platform, app: str) -> Release:
    """The app's current release, which must have a build (something was pushed)."""
    release = releases.latest(p.store, app)
    if release is None or release.build is None:
        raise NotFound(f"{app} has nothing deployed yet: git push first")
    return release


def scale(p: Platform, app: str, changes: dict[str, int], user: str, out: Output) -> dict[str, int]:
    """Change the formation of the running release; returns the new formation.

    Up: the new containers start (next free nums) and must be healthy before the router gets them.
    Down: the router drops the removed containers first, then they stop. No new release."""
    release = running_release(p, app)
    assert release.build is not None
    types = release.build.process_types
    for ptype in changes:
        if ptype not in types:
            raise ValidationError(f"{app} has no process type {ptype!r}; it declares: {', '.join(types)}")
    # Zeros are kept: a type scaled to zero on purpose must not fall back to the build's default.
    formation = {**apps.get_formation(p.store, app), **changes}
    d = deployment_for(p, release, formation)
    existing = [i.name for i in p.backend.instances(app)]
    todo = rollout.scale_plan(app, release.version, types, existing, formation)
    out.step(f"Scaling {app}:v{release.version} ({_describe(formation)})")
    started = (
        rollout.launch_specs(p.backend, d, [rollout.spec(d, n.type, n.num) for n in todo.start], out.detail)
        if todo.start
        else []
    )
    try:
        if todo.routed_change:
            leaving = {str(n) for n in todo.stop}
            live = [
                i
                for i in p.backend.instances(app)
                if i.name.version == release.version and str(i.name) not in leaving
            ]
            out.step("Switching the router")
            publish(p, app, rollout.endpoints(live))
        apps.set_formation(p.store, app, formation)
    except BaseException:
        rollout.stop_all(p.backend, [str(i.name) for i in started], 0)
        raise
    if todo.stop:
        rollout.stop_all(p.backend, [str(n) for n in todo.stop], p.settings.stop_grace)
        out.detail(f"stopped {', '.join(str(n) for n in todo.stop)}")
    events.record(p.store, app, user, f"{user} scaled {_describe(changes)}")
    out.step(f"done, {app}:v{release.version} runs {_describe(formation)}")
    return formation


def restart(p: Platform, app: str, ptype: str | None, num: int | None, user: str, out: Output) -> list[str]:
    """Restart the running release's containers (all, one type, or one), one at a time.

    A routed container is moved aside (renamed; the router still reaches it), its replacement starts
    under the real name and must be healthy, the router switches, then the old one stops: no request
    fails. Other containers stop, then start again."""
    release = running_release(p, app)
    assert release.build is not None
    types = release.build.process_types
    if ptype is not None and ptype not in types:
        raise ValidationError(f"{app} has no process type {ptype!r}; it declares: {', '.join(types)}")
    d = deployment_for(p, release)
    chosen = [
        i.name
        for i in p.backend.instances(app)
        if i.name.version == release.version
        and i.name.type in types
        and ptype in (None, i.name.type)
        and num in (None, i.name.num)
    ]
    if not chosen:
        what = f"{ptype}.{num}" if num is not None else (ptype or "process")
        raise NotFound(f"{app} runs no {what}: see ps")
    out.step(f"Restarting {', '.join(f'{n.type}.{n.num}' for n in chosen)} of {app}:v{release.version}")
    for name in chosen:
        spec = rollout.spec(d, name.type, name.num)
        if spec.port is None:
            p.backend.stop(str(name), p.settings.stop_grace)
            p.backend.start(spec)
            out.detail(f"restarted {name}")
        else:
            _restart_routed(p, d, spec, out)
    events.record(p.store, app, user, f"{user} restarted {', '.join(f'{n.type}.{n.num}' for n in chosen)}")
    out.step(f"done, {app}:v{release.version} restarted")
    return [str(n) for n in chosen]


def _restart_routed(p: Platform, d: rollout.Deployment, spec: ContainerSpec, out: Output) -> None:
    name = str(spec.name)
    aside = f"{name}.retiring"
    p.backend.stop(aside, 0)  # left over from an interrupted restart
    p.backend.rename(name, aside)
    try:
        rollout.launch_specs(p.backend, d, [spec], out.detail)
    except BaseException:
        p.backend.rename(aside, name)
        raise
    try:
        live = [i for i in p.backend.instances(d.app) if i.name.version == d.version]
        publish(p, d.app, rollout.endpoints(live))
    except BaseException:
        p.backend.stop(name, 0)
        p.backend.rename(aside, name)
        raise
    p.backend.stop(aside, p.settings.stop_grace)


def run_argv(
    p: Platform, app: str, command: list[str], *, interactive: bool, tty: bool
) -> tuple[str, list[str]]:
    """A one-off container of the running release with its config: its name and the attached argv.

    Named APP_vN.run.K, K one more than the highest run of that release now."""
    release = running_release(p, app)
    d = deployment_for(p, release, {})
    taken = [
        i.name.num for i in p.backend.instances(app) if i.name.type == "run" and i.name.version == d.version
    ]
    spec = rollout.spec(d, "run", max(taken, default=0) + 1, command)
    return str(spec.name), p.backend.run_argv(spec, interactive=interactive, tty=tty)


__all__ = [
    "DeisError",
    "Platform",
    "deploy",
    "destroy",
    "publish",
    "republish",
    "restart",
    "roll_out",
    "run_argv",
    "scale",
]
