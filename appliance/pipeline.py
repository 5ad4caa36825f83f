"""The deploy pipeline: the only place that composes builders, releaser, scheduler and routerconf.

    deploy(commit)   = build -> prepare release -> roll_out
    roll_out(release) = release phase (Procfile `release:`, if any) -> launch new (healthy)
                        -> record release -> switch router -> retire old

`config:set`, `releases:rollback`, `scale` and friends prepare a release (or formation) and call
`roll_out` too. Callers hold the app's lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import builders
from appliance.errors import DeisError, ValidationError
from appliance.output import Output
from appliance.settings import Settings
from releaser import apps, events, releases
from releaser.releases import Release
from releaser.store import Store
from routerconf import Router
from scheduler import release_phase, rollout
from scheduler.base import Backend
from scheduler.docker import DockerBackend
from scheduler.health import HealthCheck


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
        out.step(f"{app}:v{release.version} recorded; it runs once code is pushed")
        return release
    formation = apps.get_formation(p.store, app)
    if not formation:
        formation = build.default_formation()
        apps.set_formation(p.store, app, formation)
    deployment = rollout.Deployment(
        app=app,
        version=release.version,
        image=build.image,
        procfile=build.procfile,
        port=_port(release),
        config=release.config,
        formation=formation,
        health=HealthCheck.from_config(release.config, p.settings.healthcheck_timeout),
        runner=build.runner,
        release_command=build.release,
    )
    if build.release:
        out.step(f"Running release command: {build.release}")
        release_phase.run(p.backend, deployment, out.detail)
    out.step(f"Launching {app}:v{release.version} ({_describe(formation)})")
    instances = rollout.launch(p.backend, deployment, out.detail)
    switched = False
    try:
        out.step("Switching the router")
        publish(p, app, rollout.endpoints(instances))
        switched = True
        releases.record(p.store, release)
    except BaseException:
        if switched:  # give the traffic back to the release that is still running
            old = [i for i in p.backend.instances(app) if i.name.version != release.version]
            publish(p, app, rollout.endpoints(old))
        for inst in instances:
            p.backend.stop(str(inst.name), 0)
        raise
    events.record(p.store, app, release.by, f"{release.summary}: v{release.version} deployed")
    retired = rollout.retire(p.backend, app, release.version, p.settings.stop_grace)
    if retired:
        out.detail(f"retired {', '.join(retired)}")
    out.step(f"done, {app}:v{release.version} deployed")
    out.detail(p.settings.app_url(app))
    return release


def publish(p: Platform, app: str, endpoints: list[str]) -> None:
    """Point the router at `endpoints`: the one place the pipeline talks to routerconf."""
    p.router.publish(app, endpoints)


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


__all__ = ["DeisError", "Platform", "deploy", "roll_out"]
