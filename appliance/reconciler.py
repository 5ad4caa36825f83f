"""Self-healing: keep each app's running containers equal to its current release and formation,
and the router pointed at exactly the healthy ones.

Runs inside the appliance (`deis serve`) as a thread. Every POLL seconds it lists the platform's
containers (one engine call); when anything changed, or every FULL seconds, it compares each app with
what it should be:

- a routed container that stopped answering, or is down, leaves the router at once; it comes back
  once it passes its health check again (the engine's restart policy restarts crashed processes);
- a container that is missing, or exited for good, is started again;
- containers of other releases, or beyond the formation, are stopped (leftovers of a crashed deploy);
- of two instances of one name (a restart interrupted by a crash), the newer running one is kept.

Anything beyond routing changes is done under the app's deploy lock, taken without waiting: an app
being deployed is the deploy's business, and is looked at again on the next pass.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from appliance import pipeline
from appliance.platform import Platform
from core.errors import Conflict, DeisError
from core.names import ONE_OFF_TYPES, ROUTED_TYPES
from releaser import apps, events, releases
from releaser.locks import AppLock
from scheduler import rollout
from scheduler.base import Instance, ProcessSpec
from scheduler.health import probe

log = logging.getLogger("deis.reconciler")

POLL = 0.5
FULL = 5.0


@dataclass
class Plan:
    """What one app needs: pure, from desired specs and actual instances."""

    start: list[ProcessSpec] = field(default_factory=list)
    remove: list[Instance] = field(default_factory=list)  # stop and remove (exited, stale, surplus)

    def __bool__(self) -> bool:
        return bool(self.start or self.remove)


def diff(desired: list[ProcessSpec], actual: list[Instance]) -> Plan:
    want = {str(s.name): s for s in desired}
    by_name: dict[str, list[Instance]] = {}
    for inst in actual:
        if inst.name.type not in ONE_OFF_TYPES:
            by_name.setdefault(str(inst.name), []).append(inst)
    plan = Plan()
    for name, group in sorted(by_name.items()):
        if name not in want:
            plan.remove += group
            continue
        # Of several instances of one name, the newest that is up stays; an exited one goes.
        up = [i for i in group if i.state not in ("exited", "dead", "created")]
        keep = max(up, key=lambda i: i.started) if up else None
        plan.remove += [i for i in group if i is not keep]
        if keep is None:
            plan.start.append(want[name])
    plan.start += [spec for name, spec in want.items() if name not in by_name]
    plan.start.sort(key=lambda s: str(s.name))
    return plan


class Reconciler:
    def __init__(self, p: Platform, poll: float = POLL, full: float = FULL) -> None:
        self.p = p
        self.poll = poll
        self.full = full
        self._seen: tuple[tuple[str, str, int, float], ...] = ()
        self._pending = False  # some routed container runs but is not healthy (yet): look again soon
        self._misses: dict[str, int] = {}  # running container -> probes failed in a row
        self._probed: dict[str, bool] = {}  # this pass's probe results, by instance id

    def run(self, stop: threading.Event) -> None:
        last_full = 0.0
        while not stop.is_set():
            try:
                seen = tuple((i.id, i.state, i.restarts, i.started) for i in self.p.backend.instances())
                due = time.monotonic() - last_full >= self.full
                if seen != self._seen or self._pending or due:
                    self.pass_once()
                    last_full = time.monotonic()
                    self._seen = seen
            except DeisError as exc:
                log.warning("reconciler: %s", exc)
            except Exception:
                log.exception("reconciler pass failed")
            stop.wait(self.poll)

    def pass_once(self) -> None:
        self._pending = False
        self._probed = {}  # each instance is probed once a pass, however often it is looked at
        by_app: dict[str, list[Instance]] = {}
        for inst in self.p.backend.instances():
            by_app.setdefault(inst.name.app, []).append(inst)
        alive = {f"{i.id}@{i.started}" for group in by_app.values() for i in group}
        self._misses = {k: n for k, n in self._misses.items() if k in alive}
        for app in apps.list_apps(self.p.store):
            try:
                self.reconcile(app.name, by_app.pop(app.name, []))
            except DeisError as exc:
                log.warning("reconciling %s: %s", app.name, exc)
        for name, instances in by_app.items():
            # Containers of an app that no longer exists (destroyed while the engine was down);
            # asked once more on its own, so a listing that came back short never removes anything.
            if apps.get_app(self.p.store, name) is None:
                for inst in instances:
                    self.p.backend.stop(inst.id, 0)

    def reconcile(self, app: str, actual: list[Instance]) -> None:
        release = releases.latest(self.p.store, app)
        if release is None or release.build is None:
            return
        deployment = pipeline.deployment_for(self.p, release)
        plan = diff(rollout.plan(deployment), actual)
        endpoints = self._healthy_endpoints(deployment, actual)
        if not plan and endpoints == pipeline.published(self.p, app):
            return
        lock = AppLock(self.p.store, app, owner="reconciler")
        try:
            lock.acquire(wait=0)
        except Conflict:
            return  # a deploy or command holds the app; look again next pass
        with lock:
            # Re-read under the lock: a deploy may have finished in between.
            current = releases.latest(self.p.store, app)
            if current is None or current.version != release.version:
                return
            # ... and a scale may have changed the formation: plan from what is stored now.
            deployment = pipeline.deployment_for(self.p, current)
            actual = self.p.backend.instances(app)
            plan = diff(rollout.plan(deployment), actual)
            leaving = {i.id for i in plan.remove}
            routed = [i for i in actual if i.id not in leaving]
            if {i.endpoint for i in plan.remove} & set(pipeline.published(self.p, app) or []):
                # The router must stop sending to what goes before it goes.
                pipeline.publish(self.p, app, self._healthy_endpoints(deployment, routed))
            for inst in plan.remove:
                self.p.backend.stop(inst.id, self.p.settings.stop_grace)
            for spec in plan.start:
                self.p.backend.start(spec)
            if plan:
                what = ", ".join(
                    [f"removed {i.name}" for i in plan.remove] + [f"started {s.name}" for s in plan.start]
                )
                events.record(self.p.store, app, "deis", f"reconciler {what}")
                log.info("%s: %s", app, what)
            endpoints = self._healthy_endpoints(deployment, self.p.backend.instances(app))
            before = pipeline.published(self.p, app)
            if endpoints != before:
                log.info("%s: routing to %s (was %s)", app, endpoints, before)
                pipeline.publish(self.p, app, endpoints)

    def _healthy_endpoints(self, d: rollout.Deployment, actual: list[Instance]) -> list[str]:
        routed = [i for i in actual if i.name.version == d.version and i.name.type in ROUTED_TYPES]
        healthy = [i for i in routed if i.running and self._answers(i, d)]
        if len(healthy) < len(routed):
            self._pending = True
        return rollout.endpoints(healthy)

    def _answers(self, inst: Instance, d: rollout.Deployment) -> bool:
        """Healthy, or running and missed only one probe: one slow answer under load must not take
        an app's only container out of the router. A container that is down leaves at once.
        A pass probes each instance once, so a miss counts once however often a pass asks."""
        key = f"{inst.id}@{inst.started}"
        if inst.id not in self._probed:
            ok = self._probed[inst.id] = probe(self.p.backend, inst, d.health)[0]
            if ok:
                self._misses.pop(key, None)
            else:
                self._misses[key] = self._misses.get(key, 0) + 1
        if self._probed[inst.id]:
            return True
        return self._misses.get(key, 0) < 2 and inst.endpoint in (pipeline.published(self.p, d.app) or [])


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=Reconciler(p).run, args=(stop,), name="reconciler", daemon=True).start()
    return stop
