"""`scheduler:set NAME`: move every app onto another scheduler backend without a failed request.

In three steps, every app's deploy lock held throughout (so no deploy, scale or reconciler pass
lands on the backend being left, and none is orphaned there):

1. start  every app's running release on the new backend, and wait until its routed instances
          are healthy. A failure stops what was started there; nothing else changed.
2. route  each app's router entry to the new instances only.
3. retire the app's instances on the old backend (with the usual stop grace).

Only then is the choice stored (platform/scheduler) and the platform's backend replaced, which
also makes the reconciler follow the new backend's events.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import scheduler
from appliance import pipeline
from appliance.platform import Platform
from core.output import Output
from releaser import apps, events, releases
from releaser import platform as platform_config
from releaser.locks import AppLock
from scheduler import rollout
from scheduler.base import Backend, Instance

CHOICES = scheduler.CHOICES  # what an admin may choose (the commands see the backends through here)


def switch(p: Platform, name: str, user: str, out: Output) -> bool:
    """Move every app to the backend `name`; False if it is the one in use already."""
    new = p.make_backend(name)  # refuses an unknown name (scheduler.create); nothing is asked yet
    if name == platform_config.scheduler(p.store):
        return False
    new.check()
    old = p.backend
    new.removing = old.removing  # what the log collector keeps of a stopped instance, there too
    with contextlib.ExitStack() as held:
        moving = _lock_all(p, user, out, held)
        out.step(f"Starting {len(moving)} app(s) on the {name} scheduler")
        started = _start_all(p, new, moving, out)
        out.step("Routing to the new instances")
        for app, instances in started.items():
            pipeline.publish(p, app, rollout.endpoints(instances))
        out.step(f"Retiring the apps' instances on the {old.name} scheduler")
        for app in started:
            rollout.stop_all(old, [i.id for i in old.instances(app)], p.settings.stop_grace)
        platform_config.set_scheduler(p.store, name)
        p.switch_backend(new)
        for app in started:
            events.record(p.store, app, user, f"{user} moved the app to the {name} scheduler")
    return True


def _lock_all(p: Platform, user: str, out: Output, held: contextlib.ExitStack) -> list[rollout.Deployment]:
    """Every app's lock (released by `held`), and the deployments of those with something running."""
    moving = []
    for app in apps.list_apps(p.store):
        lock = AppLock(p.store, app.name, owner=user)
        lock.acquire(p.settings.lock_wait, on_wait=functools.partial(_waiting, out, app.name))
        held.callback(lock.release)
        release = releases.latest(p.store, app.name)
        if release is not None and release.build is not None:
            moving.append(pipeline.deployment_for(p, release))
    return moving


def _start_all(
    p: Platform, new: Backend, moving: list[rollout.Deployment], out: Output
) -> dict[str, list[Instance]]:
    started: dict[str, list[Instance]] = {}
    try:
        for d in moving:
            # Leftovers of an earlier switch that died mid-way: the new backend starts from nothing.
            rollout.stop_all(new, [i.id for i in new.instances(d.app)], 0)
            started[d.app] = rollout.launch(new, d, functools.partial(_note, out, d.app))
    except BaseException:  # a hang-up too: what the new backend runs goes, the old one never stopped
        out.detail("stopping what was started: the apps stay on the scheduler they were on")
        for instances in started.values():
            rollout.stop_all(new, [i.id for i in instances], 0)
        raise
    return started


def _waiting(out: Output, app: str, holder: dict[str, Any]) -> None:
    out.detail(f"waiting for {holder.get('owner', 'someone')} to finish with {app}...")


def _note(out: Output, app: str, text: str) -> None:
    out.detail(f"{app}: {text}")
