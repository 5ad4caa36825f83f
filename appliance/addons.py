"""Backing services composed with the rest: etcd records (releaser.services), containers and
networks (addons.engine), the addons image (builders.components), and the app's variable set or
removed through a new release rolled out like `config:set` (pipeline.roll_out: zero downtime).

A link is three things, made in this order and undone in reverse: the link network (the service
joins it), the link record (from then on every new container of the app joins that network:
pipeline.deployment_for), and the release that sets the variable. Callers hold the app's lock.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from addons import engine as svc_engine
from addons.kinds import KINDS, Kind
from appliance import pipeline
from appliance.components import INSTANCE_ENV
from appliance.platform import Platform
from builders import components
from core.errors import Conflict, NotFound, ServiceError
from core.names import check_config_key
from core.output import Output
from releaser import events, releases, services
from releaser.services import Service
from scheduler.base import Stdio

READY_TIMEOUT = 120.0
_engines: dict[str, svc_engine.Engine] = {}
_engines_lock = threading.Lock()


def engine(p: Platform) -> svc_engine.Engine:
    key = str(p.settings.state_dir)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = svc_engine.Engine(key, components.ADDONS_IMAGE)
        return _engines[key]


def kind_of(svc: Service) -> Kind:
    return KINDS[svc.kind]


def where(p: Platform, name: str) -> svc_engine.Paths:
    return svc_engine.paths(p.settings.state_dir, name)


def networks(p: Platform, app: str) -> tuple[str, ...]:
    """The link networks `app`'s containers join (one per linked service)."""
    platform = str(p.settings.state_dir)
    return tuple(svc_engine.link_network(platform, s.name, app) for s in services.linked_to(p.store, app))


def url(p: Platform, svc: Service) -> str:
    return kind_of(svc).url(svc.name, svc_engine.password(where(p, svc.name)))


# -- lifecycle ---------------------------------------------------------------------------------------
def create(p: Platform, kind: str, name: str, user: str, out: Output) -> Service:
    """Claim the name, make the image if missing, start the container and wait until it answers.
    On any failure nothing is left behind."""
    svc = services.create(p.store, name, kind, user)
    began = time.monotonic()
    e = engine(p)
    try:
        _ensure_image(p, out)
        out.step(f"Creating {kind} service {name}")
        paths = where(p, name)
        svc_engine.forget(paths)  # a half-made service of an earlier attempt at this name
        svc_engine.new_password(paths)
        s = p.settings
        e.create(KINDS[kind], name, paths, memory=s.default_memory or None, pids=s.default_pids_limit or None)
        e.wait_ready(KINDS[kind], name, READY_TIMEOUT)
    except BaseException:
        e.destroy(name)
        svc_engine.forget(where(p, name))
        services.forget(p.store, name)
        raise
    out.detail(f"accepting connections after {time.monotonic() - began:.1f} s")
    out.step(f"done, {kind} service {name} created: services:link {name} -a APP")
    return svc


def _ensure_image(p: Platform, out: Output) -> None:
    """`deis up` makes the addons image with the others; the appliance in its container cannot
    (no debootstrap there), so there a missing one is the operator's to make."""
    if components.addons_image_ready():
        return
    if os.environ.get(INSTANCE_ENV):
        raise ServiceError(
            f"the {components.ADDONS_IMAGE} image is missing: the operator runs deis up to make it"
        )
    components.ensure_addons_image(p.settings, out)


def destroy(p: Platform, svc: Service, out: Output) -> None:
    if svc.links:
        raise Conflict(
            f"service {svc.name} is linked to {', '.join(sorted(svc.links))}: unlink it first"
            f" (services:unlink {svc.name} -a APP)"
        )
    out.step(f"Destroying service {svc.name}")
    engine(p).destroy(svc.name)
    svc_engine.forget(where(p, svc.name))
    services.forget(p.store, svc.name)
    out.step(f"done, service {svc.name} and its data removed")


def restart(p: Platform, svc: Service, out: Output) -> None:
    e = engine(p)
    out.step(f"Restarting service {svc.name}")
    e.stop(svc.name)
    e.start(svc.name)
    e.wait_ready(kind_of(svc), svc.name, READY_TIMEOUT)
    out.step(f"done, service {svc.name} accepts connections")


def info(p: Platform, svc: Service, with_url: bool) -> dict[str, Any]:
    e = engine(p)
    kind = kind_of(svc)
    status = e.status(svc.name)
    data: dict[str, Any] = {
        "name": svc.name,
        "kind": svc.kind,
        "owner": svc.owner,
        "created": svc.created,
        "version": e.output(svc.name, list(kind.version)),
        "status": status.state,
        "health": status.health,
        "restarts": status.restarts,
        "started": status.started,
        "size": e.size(svc.name),
        "links": dict(sorted(svc.links.items())),
        "schedule": services.get_schedule(p.store, svc.name),
    }
    if with_url:
        data["url"] = url(p, svc)
    return data


# -- links -------------------------------------------------------------------------------------------
def link(p: Platform, svc: Service, app: str, variable: str | None, user: str, out: Output) -> None:
    kind = kind_of(svc)
    variable = check_config_key(variable or kind.variable)
    if app in svc.links:
        raise Conflict(f"service {svc.name} is linked to {app} already (as {svc.links[app]})")
    current = releases.latest(p.store, app)
    config = dict(current.config) if current else {}
    if variable in config:
        raise Conflict(
            f"{app} has {variable} set already: name another variable with --as VAR, or config:unset it"
        )
    config[variable] = url(p, svc)
    out.step(f"Linking {svc.name} to {app} as {variable}")
    e = engine(p)
    e.link(svc.name, app)
    services.add_link(p.store, svc.name, app, variable, user)
    try:
        summary = f"{user} linked service {svc.name} as {variable}"
        release = releases.prepare(p.store, app, by=user, summary=summary, config=config)
        pipeline.roll_out(p, release, out)
    except BaseException:
        services.remove_link(p.store, svc.name, app)
        e.unlink(svc.name, app)
        raise
    events.record(p.store, app, user, f"{user} linked service {svc.name} as {variable}")


def unlink(p: Platform, svc: Service, app: str, user: str, out: Output) -> None:
    variable = svc.links.get(app)
    if variable is None:
        raise NotFound(f"service {svc.name} is not linked to {app}")
    out.step(f"Unlinking {svc.name} from {app} ({variable})")
    services.remove_link(p.store, svc.name, app)
    try:
        current = releases.latest(p.store, app)
        if current is not None and variable in current.config:
            config = {k: v for k, v in current.config.items() if k != variable}
            summary = f"{user} unlinked service {svc.name} ({variable})"
            release = releases.prepare(p.store, app, by=user, summary=summary, config=config)
            pipeline.roll_out(p, release, out)
    except BaseException:
        services.add_link(p.store, svc.name, app, variable, user)
        raise
    engine(p).unlink(svc.name, app)
    events.record(p.store, app, user, f"{user} unlinked service {svc.name}")


def forget_app(p: Platform, app: str) -> None:
    """`app` is being destroyed: its links go (records and networks; no release)."""
    for svc in services.linked_to(p.store, app):
        services.remove_link(p.store, svc.name, app)
        engine(p).unlink(svc.name, app)


# -- the data ----------------------------------------------------------------------------------------
def backup(p: Platform, svc: Service, stdio: Stdio, hangup: threading.Event | None = None) -> int:
    """A consistent dump on `stdio.stdout` (pg_dump custom format; redis RDB); its exit status."""
    kind = kind_of(svc)
    e = engine(p)
    check_running(p, svc)
    argv = e.exec_argv(svc.name, kind.backup, kind.exec_user, stdin=False, tty=False)
    return e.attached(argv, None, stdio.stdout, stdio.stderr, hangup)


def restore(p: Platform, svc: Service, stdio: Stdio) -> None:
    """Replace the service's data with the dump on `stdio.stdin` (what `backup` wrote). Called
    while the session is attached: nothing may be printed but to `stdio`."""
    kind = kind_of(svc)
    e = engine(p)
    if kind.restore:
        argv = e.exec_argv(svc.name, kind.restore, kind.exec_user, stdin=True, tty=False)
        rc = e.attached(argv, stdio.stdin, stdio.stderr, stdio.stderr)
        if rc != 0:
            raise ServiceError(f"pg_restore failed (exit status {rc}): the restore was rolled back")
    else:
        e.stop(svc.name)
        try:
            argv = svc_engine.redis_restore_argv(e.image, where(p, svc.name))
            rc = e.attached(argv, stdio.stdin, stdio.stderr, stdio.stderr)
        finally:
            e.start(svc.name)
            e.wait_ready(kind, svc.name, READY_TIMEOUT)
        if rc != 0:
            raise ServiceError(f"the restore failed (exit status {rc}): the data is as it was")


def connect(p: Platform, svc: Service, stdio: Stdio) -> int:
    kind = kind_of(svc)
    e = engine(p)
    check_running(p, svc)
    argv = e.exec_argv(svc.name, kind.connect, kind.exec_user, stdin=stdio.stdin is not None, tty=stdio.tty)
    return e.attached(argv, stdio.stdin, stdio.stdout, stdio.stderr)


def logs(
    p: Platform, svc: Service, stdio: Stdio, follow: bool, tail: int | None, hangup: threading.Event
) -> int:
    e = engine(p)
    return e.attached(
        e.logs_argv(svc.name, follow=follow, tail=tail), None, stdio.stdout, stdio.stdout, hangup
    )


def check_running(p: Platform, svc: Service) -> None:
    status = engine(p).status(svc.name)
    if status.state != "running":
        raise ServiceError(f"service {svc.name} is {status.state}: see services:info {svc.name}")
