"""What users do to a running app besides deploying it: scale, restart, one-off runs, listing its
processes and their output, destroying it. No new release (as in Deis v1), except that destroy
ends the app. The SSH commands call these; none of them touches a backend itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import builders
from appliance import addons, pipeline, storage
from appliance.platform import Platform
from core.errors import Conflict, NotFound, ValidationError
from core.output import Output
from core.records import Release
from releaser import apps, domains, events, releases
from releaser.metricstore import MetricStore
from scheduler import rollout
from scheduler.base import Instance, LogStream, ProcessSpec, Stdio


def running_release(p: Platform, app: str) -> Release:
    """The app's current release, which must have a build (something was pushed)."""
    release = releases.latest(p.store, app)
    if release is None or release.build is None:
        raise NotFound(f"{app} has nothing deployed yet: git push first")
    return release


def _check_type(app: str, release: Release, ptype: str) -> None:
    assert release.build is not None
    types = release.build.process_types
    if ptype not in types:
        raise ValidationError(f"{app} has no process type {ptype!r}; it declares: {', '.join(types)}")


# -- what runs ---------------------------------------------------------------------------------------
def processes(p: Platform, app: str) -> list[Instance]:
    """The app's instances, every release's and the one-offs (sorted by name, then start)."""
    return p.backend.instances(app)


def output(
    p: Platform,
    instance: Instance,
    *,
    tail: int | None = None,
    follow: bool = False,
    since: float | None = None,
) -> LogStream:
    """One instance's output (see Backend.logs)."""
    return p.backend.logs(instance.id, tail=tail, follow=follow, since=since)


# -- scale -------------------------------------------------------------------------------------------
def scale(p: Platform, app: str, changes: dict[str, int], user: str, out: Output) -> dict[str, int]:
    """Change the formation of the running release; returns the new formation.

    Up: the new instances start (next free nums) and must be healthy before the router gets them.
    Down: the router drops the removed instances first, then they stop. No new release."""
    release = running_release(p, app)
    assert release.build is not None
    for ptype in changes:
        _check_type(app, release, ptype)
    # Zeros are kept: a type scaled to zero on purpose must not fall back to the build's default.
    formation = {**apps.get_formation(p.store, app), **changes}
    check_scale(p, app, changes, formation)
    d = pipeline.deployment_for(p, release, formation)
    existing = [i.name for i in p.backend.instances(app)]
    todo = rollout.scale_plan(app, release.version, release.build.process_types, existing, formation)
    out.step(f"Scaling {app}:v{release.version} ({pipeline.describe(formation)})")
    specs = [rollout.spec(d, n.type, n.num) for n in todo.start]
    started = rollout.launch_specs(p.backend, d, specs, out.detail) if specs else []
    try:
        if todo.routed_change:
            leaving = set(todo.stop)
            live = [
                i
                for i in p.backend.instances(app)
                if i.name.version == release.version and i.name not in leaving
            ]
            out.step("Switching the router")
            pipeline.publish(p, app, rollout.endpoints(live))
        apps.set_formation(p.store, app, formation)
    except BaseException:
        rollout.stop_all(p.backend, [i.id for i in started], 0)
        raise
    if todo.stop:
        rollout.stop_all(p.backend, [str(n) for n in todo.stop], p.settings.stop_grace)
        out.detail(f"stopped {', '.join(str(n) for n in todo.stop)}")
    events.record(p.store, app, user, f"{user} scaled {pipeline.describe(changes)}")
    out.step(f"done, {app}:v{release.version} runs {pipeline.describe(formation)}")
    return formation


def check_scale(p: Platform, app: str, changes: dict[str, int], formation: dict[str, int]) -> None:
    """The operator's caps: containers per process type and per app (ValidationError, one line)."""
    per_type, per_app = p.settings.max_scale_per_type, p.settings.max_scale_per_app
    for ptype, count in sorted(changes.items()):
        if count > per_type:
            raise ValidationError(
                f"cannot scale {ptype} to {count}: at most {per_type} containers per process type"
                " (the operator's DEIS_MAX_SCALE_PER_TYPE)"
            )
    total = sum(formation.values())
    if total > per_app and total > sum(apps.get_formation(p.store, app).values()):
        raise ValidationError(
            f"cannot scale {app} to {total} containers: at most {per_app} per app"
            " (the operator's DEIS_MAX_SCALE_PER_APP)"
        )


# -- restart -----------------------------------------------------------------------------------------
def restart(p: Platform, app: str, ptype: str | None, num: int | None, user: str, out: Output) -> list[str]:
    """Restart the running release's instances (all, one type, or one), one at a time.

    A routed instance's replacement starts beside it and must be healthy, the router switches,
    then the old one stops: no request fails. Other instances stop, then start again."""
    release = running_release(p, app)
    assert release.build is not None
    if ptype is not None:
        _check_type(app, release, ptype)
    d = pipeline.deployment_for(p, release)
    chosen = sorted(
        {
            i.name
            for i in p.backend.instances(app)
            if i.name.version == release.version
            and i.name.type in release.build.process_types
            and ptype in (None, i.name.type)
            and num in (None, i.name.num)
        },
        key=str,
    )
    if not chosen:
        what = f"{ptype}.{num}" if num is not None else (ptype or "process")
        raise NotFound(f"{app} runs no {what}: see ps")
    listed = ", ".join(f"{n.type}.{n.num}" for n in chosen)
    out.step(f"Restarting {listed} of {app}:v{release.version}")
    for name in chosen:
        spec = rollout.spec(d, name.type, name.num)
        if spec.port is None:
            p.backend.stop(str(name), p.settings.stop_grace)
            p.backend.start(spec)
            out.detail(f"restarted {name}")
        else:
            _restart_routed(p, d, spec, out)
    events.record(p.store, app, user, f"{user} restarted {listed}")
    out.step(f"done, {app}:v{release.version} restarted")
    return [str(n) for n in chosen]


def _restart_routed(p: Platform, d: rollout.Deployment, spec: ProcessSpec, out: Output) -> None:
    old = [i.id for i in p.backend.instances(d.app) if i.name == spec.name]
    new = rollout.launch_specs(p.backend, d, [spec], out.detail)  # beside the old one
    try:
        live = [i for i in p.backend.instances(d.app) if i.name.version == d.version and i.id not in old]
        pipeline.publish(p, d.app, rollout.endpoints(live))
    except BaseException:
        rollout.stop_all(p.backend, [i.id for i in new], 0)
        raise
    rollout.stop_all(p.backend, old, p.settings.stop_grace)


# -- one-off runs ------------------------------------------------------------------------------------
def one_off(p: Platform, app: str, command: list[str]) -> ProcessSpec:
    """A one-off instance of the running release with its config, named APP_vN.run.K, K one more
    than the highest run of that release now."""
    release = running_release(p, app)
    d = pipeline.deployment_for(p, release, {})
    taken = [
        i.name.num for i in p.backend.instances(app) if i.name.type == "run" and i.name.version == d.version
    ]
    return rollout.spec(d, "run", max(taken, default=0) + 1, command)


def run(p: Platform, spec: ProcessSpec, stdio: Stdio, hangup: threading.Event) -> int:
    """Run the one-off `spec` attached to `stdio`; its exit status. When `hangup` is set (the
    client went away) the instance is stopped."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if hangup.is_set():
                p.backend.stop(str(spec.name), 0)
                return

    watcher = threading.Thread(target=watch, name=f"hangup-{spec.name}", daemon=True)
    watcher.start()
    try:
        return p.backend.run_attached(spec, stdio)
    finally:
        done.set()
        if hangup.is_set():  # the client left while it ran: make sure nothing lives on
            p.backend.stop(str(spec.name), 0)


def used_elsewhere(p: Platform, app: str) -> frozenset[str]:
    """Images of `app`'s registry repository that releases of other apps name (builds:create)."""
    repo = f"{p.settings.registry}/{app}"
    return frozenset(
        r.build.image
        for other in apps.list_apps(p.store)
        if other.name != app
        for r in releases.list_releases(p.store, other.name)
        if r.build is not None and r.build.image.startswith((f"{repo}:", f"{repo}@"))
    )


def runners_of_retired(p: Platform, name: str) -> list[str]:
    """The apps that run images of the destroyed app `name` (none when the name is free)."""
    if not apps.retired_images(p.store, name):
        return []
    repo = f"{p.settings.registry}/{name}"
    return sorted(
        other.name
        for other in apps.list_apps(p.store)
        if any(
            r.build is not None and r.build.image.startswith((f"{repo}:", f"{repo}@"))
            for r in releases.list_releases(p.store, other.name)
        )
    )


def reclaim_name(p: Platform, name: str) -> None:
    """Before `name` is created again: refused while other apps run the images a destroyed app of
    that name left; once none does, those images leave the registry and the name is free."""
    if not apps.retired_images(p.store, name):
        return
    if runners_of_retired(p, name):
        raise Conflict(
            f"the name {name} is still held: other apps run images of the destroyed app {name};"
            " choose another name"
        )
    builders.forget(p.settings, name)
    apps.forget_retired(p.store, name)


# -- destroy -----------------------------------------------------------------------------------------
def destroy(p: Platform, app: str, out: Output, forget_source: Callable[[str], None]) -> None:
    """Remove every trace of `app`: route, instances, images (local and registry), its source
    (`forget_source`, the edge's repository), etcd state.

    Each step is idempotent and etcd goes last, so a destroy that fails half-way leaves an app that
    still exists and can be destroyed again. The caller holds the app's lock.
    """
    out.step(f"Destroying {app}")
    # Nothing may bring instances back while we remove them: every type at zero (an empty
    # formation would mean "never scaled", which the reconciler fills with the build's default).
    current = releases.latest(p.store, app)
    types = current.build.process_types if current and current.build else ["cmd", "web"]
    apps.set_formation(p.store, app, dict.fromkeys(types, 0))
    p.router.remove(app)
    out.detail("router entry removed")
    gone = p.backend.instances(app)
    rollout.stop_all(p.backend, [i.id for i in gone], p.settings.stop_grace)
    names = sorted({str(i.name) for i in gone})
    out.detail(f"removed containers: {', '.join(names)}" if names else "no containers")
    keep = used_elsewhere(p, app)
    local, tags = builders.forget(p.settings, app, keep)
    out.detail(f"removed local images: {', '.join(local)}" if local else "no local images")
    out.detail(f"deleted from the registry: {', '.join(tags)}" if tags else "nothing in the registry")
    if keep:
        apps.retire_name(p.store, app, keep)  # before the app's state goes: the name stays held
        out.detail(f"kept, other apps deployed them: {', '.join(sorted(keep))}")
    forget_source(app)
    addons.forget_app(p, app)
    storage.forget_app(p, app)
    domains.forget_app(p.store, app)
    apps.destroy_app(p.store, app)
    p.logs.forget(app)
    MetricStore(p.settings.metrics_dir).remove(app)
    p.drains.refresh(app)  # its drains went with its state
    out.detail("repository, logs, metrics and state removed")
    out.step(f"done, {app} destroyed")
