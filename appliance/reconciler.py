"""Self-healing: keep each app's running containers equal to its current release and formation,
and the router pointed at exactly the healthy ones.

Runs inside the appliance (`deis serve`) as a thread. It follows the backend's event stream (an
instance started, exited, was removed, changed health) and looks again at the app each event names,
at once; an app with a routed container that runs but does not answer yet is probed again every
POLL seconds until it does; an app it could not look at (its lock held, the store down) again after
RETRY seconds. Every RESYNC seconds, and whenever the stream was lost and followed again (events may
have been missed), it compares every app. Idle, it does nothing but wait on the stream.

- a routed container that stopped answering, or is down, leaves the router at once; it comes back
  once it passes its health check again (the engine's restart policy restarts crashed processes);
- a container that is missing, or exited for good, is started again;
- containers of other releases, or beyond the formation, are stopped (leftovers of a crashed deploy);
- of two instances of one name (a restart interrupted by a crash), the newer running one is kept.

Anything beyond routing changes is done under the app's deploy lock, taken without waiting: an app
being deployed is the deploy's business, and is looked at again on the next pass.

One app's misbehaviour delays no other: an app's routed containers are probed side by side (a pool
of PROBE_WORKERS), each probe cut off after PROBE_CAP seconds whatever its app asks for, and a look
waits for them at most PROBE_WAIT; a probe still running then counts as no answer yet (neither a
pass nor a miss: the container keeps its place in the router or stays out of it), is not started
again, and gives its verdict to a later look (the app is looked at again after POLL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

from appliance import pipeline
from appliance.platform import Platform
from core.errors import Conflict, DeisError
from core.names import ONE_OFF_TYPES, ROUTED_TYPES
from releaser import apps, events, releases
from releaser.locks import AppLock
from scheduler import rollout
from scheduler.base import EventStream, Instance, ProcessSpec
from scheduler.health import probe

log = logging.getLogger("deis.reconciler")

POLL = 0.25  # an app whose routed container runs but does not answer yet: probed again this often
RETRY = 1.0  # an app that could not be looked at (its lock held, the store down); a lost event stream
RESYNC = 300.0  # every app, whatever the events said: the safety net for a missed event
FIRST_WAIT = 2.0  # at start, how long the first full pass waits for the event stream to be followed
PROBE_CAP = 2.0  # seconds one probe may take, whatever its app asks for
PROBE_WAIT = 0.5  # seconds a look waits for its probes; slower ones give their verdict to a later look
PROBE_WORKERS = 32


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
    def __init__(self, p: Platform, poll: float = POLL, full: float = RESYNC, retry: float = RETRY) -> None:
        self.p = p
        self.poll = poll
        self.full = full
        self.retry = retry
        self._pending: set[str] = set()  # apps with a routed container running but not healthy (yet)
        self._busy: set[str] = set()  # apps whose lock someone else held: look again after `retry`
        self._misses: dict[str, int] = {}  # running container -> probes failed in a row
        self._probed: dict[str, bool | None] = {}  # this pass's verdicts by instance id; None: not yet
        self._pool = ThreadPoolExecutor(max_workers=PROBE_WORKERS, thread_name_prefix="probe")
        self._inflight: dict[str, Future[bool]] = {}  # probes that outlasted the look that started them
        # Shared with the thread that follows the event stream, under `_wake`:
        self._wake = threading.Condition()
        self._dirty: set[str] = set()  # apps an event named since they were last looked at
        self._later: dict[str, float] = {}  # app -> when (monotonic) to look at it again
        self._resync = False  # the stream was (re)joined: events may have been missed, look at everything
        self._stream: EventStream | None = None
        p.backend_changed.append(self._drop_stream)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        follower = threading.Thread(target=self._follow, args=(stop,), name="reconciler-events", daemon=True)
        follower.start()
        next_full = time.monotonic() + FIRST_WAIT  # or as soon as the stream is followed
        try:
            while True:
                due, full = self._wait(stop, next_full)
                if stop.is_set():
                    return
                if full:
                    next_full = time.monotonic() + (self.full if self._guard(self.pass_once) else self.retry)
                else:
                    self._guard(self.pass_apps, due)
        finally:
            with self._wake:
                stream, self._stream = self._stream, None
            if stream is not None:
                stream.close()
            follower.join(5)

    def _wait(self, stop: threading.Event, next_full: float) -> tuple[set[str], bool]:
        """Block until an event, an app's time to be looked at again, or the full pass is due."""
        with self._wake:
            while not stop.is_set():
                now = time.monotonic()
                due = self._dirty | {app for app, when in self._later.items() if when <= now}
                full = self._resync or now >= next_full
                if due or full:
                    self._dirty.clear()
                    for app in due:
                        self._later.pop(app, None)
                    self._resync = False
                    return due, full
                wake = min([next_full, *self._later.values()])
                self._wake.wait(min(wake - now, 1.0))  # at least once a second: `stop` is an Event
            return set(), False

    def _follow(self, stop: threading.Event) -> None:
        """The event stream, followed again whenever it ends (the engine restarted, say)."""
        while not stop.is_set():
            try:
                stream = self.p.backend.events()
            except DeisError as exc:
                log.warning("reconciler: cannot follow the engine's events: %s", exc)
                stop.wait(self.retry)
                continue
            with self._wake:
                if stop.is_set():
                    stream.close()
                    return
                self._stream = stream
                self._resync = True  # whatever happened while no stream was followed
                self._wake.notify()
            for event in stream:
                with self._wake:
                    self._dirty.add(event.app)
                    self._wake.notify()
            if not stop.is_set():
                log.warning("reconciler: the engine's event stream ended; following it again")
                stop.wait(self.retry)

    def _drop_stream(self) -> None:
        """The platform now uses another backend: end the old one's stream; `_follow` follows the
        new one's, and the full pass that follows looks at every app there."""
        with self._wake:
            stream = self._stream
        if stream is not None:
            stream.close()

    def _guard(self, step: Callable[..., None], *args: object) -> bool:
        try:
            step(*args)
            return True
        except DeisError as exc:
            log.warning("reconciler: %s", exc)
        except Exception:
            log.exception("reconciler pass failed")
        return False

    def _again(self, app: str, after: float) -> None:
        with self._wake:
            when = time.monotonic() + after
            self._later[app] = min(when, self._later.get(app, when))

    # -- passes --------------------------------------------------------------------------------
    def pass_once(self) -> None:
        """Every app, from one listing of every instance."""
        self._probed = {}  # each instance is probed once a pass, however often it is looked at
        by_app: dict[str, list[Instance]] = {}
        for inst in self.p.backend.instances():
            by_app.setdefault(inst.name.app, []).append(inst)
        alive = {f"{i.id}@{i.started}" for group in by_app.values() for i in group}
        self._misses = {k: n for k, n in self._misses.items() if k in alive}
        ids = {k.partition("@")[0] for k in alive}
        self._inflight = {k: f for k, f in self._inflight.items() if k in ids or not f.done()}
        for app in apps.list_apps(self.p.store):
            self._look(app.name, by_app.pop(app.name, []))
        for name, instances in by_app.items():
            # Containers of an app that no longer exists (destroyed while the engine was down);
            # asked once more on its own, so a listing that came back short never removes anything.
            if apps.get_app(self.p.store, name) is None:
                for inst in instances:
                    self.p.backend.stop(inst.id, 0)

    def pass_apps(self, names: set[str]) -> None:
        """The apps events named (or that asked to be looked at again), each from its own listing.
        An app the store does not know is left to the full pass."""
        self._probed = {}
        for name in sorted(names):
            try:
                known = apps.get_app(self.p.store, name) is not None
            except DeisError as exc:
                log.warning("reconciling %s: %s", name, exc)
                self._again(name, self.retry)
                continue
            if known:
                self._look(name, None)

    def _look(self, app: str, actual: list[Instance] | None) -> None:
        """Reconcile one app; schedule it again if it is not settled."""
        self._pending.discard(app)
        self._busy.discard(app)
        try:
            self.reconcile(app, self.p.backend.instances(app) if actual is None else actual)
        except DeisError as exc:
            log.warning("reconciling %s: %s", app, exc)
            self._again(app, self.retry)
            return
        if app in self._busy:
            self._again(app, self.retry)
        elif app in self._pending:
            self._again(app, self.poll)

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
            self._busy.add(app)  # a deploy or command holds the app; look again soon
            return
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
        self._probe_all([i for i in routed if i.running], d)
        healthy = [i for i in routed if i.running and self._answers(i, d)]
        if len(healthy) < len(routed) or any(self._misses.get(f"{i.id}@{i.started}") for i in healthy):
            self._pending.add(d.app)  # not all answer (or one kept despite a miss): probe again soon
        return rollout.endpoints(healthy)

    def _answers(self, inst: Instance, d: rollout.Deployment) -> bool:
        """Healthy, or running and missed only one probe: one slow answer under load must not take
        an app's only container out of the router. A container that is down leaves at once.
        A pass probes each instance once, so a miss counts once however often a pass asks."""
        key = f"{inst.id}@{inst.started}"
        if inst.id not in self._probed:
            self._probe_all([inst], d)
        verdict = self._probed[inst.id]
        if verdict:
            return True
        if verdict is None:
            self._pending.add(d.app)  # no answer yet: look again soon
        return self._misses.get(key, 0) < 2 and inst.endpoint in (pipeline.published(self.p, d.app) or [])

    def _probe_all(self, instances: list[Instance], d: rollout.Deployment) -> None:
        """Probe `instances` side by side, waiting at most PROBE_WAIT for the probes started here;
        verdicts in `self._probed` (None: not known yet), misses counted."""
        todo: dict[str, tuple[Instance, Future[bool]]] = {}
        fresh: list[Future[bool]] = []  # an older probe still running is slow: not waited for again
        for inst in instances:
            if inst.id in self._probed or inst.id in todo:
                continue
            fut = self._inflight.get(inst.id)
            if fut is None:
                fut = self._inflight[inst.id] = self._pool.submit(self._probe_one, inst, d)
                fresh.append(fut)
            todo[inst.id] = (inst, fut)
        if fresh:
            wait_futures(fresh, timeout=PROBE_WAIT)
        for iid, (inst, fut) in todo.items():
            if not fut.done():
                self._probed[iid] = None
                continue
            del self._inflight[iid]
            ok = self._probed[iid] = fut.result()
            key = f"{inst.id}@{inst.started}"
            if ok:
                self._misses.pop(key, None)
            else:
                self._misses[key] = self._misses.get(key, 0) + 1

    def _probe_one(self, inst: Instance, d: rollout.Deployment) -> bool:
        try:
            return probe(self.p.backend, inst, d.health, cap=PROBE_CAP)[0]
        except Exception:  # a probe that cannot run is a probe that failed
            return False


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=Reconciler(p).run, args=(stop,), name="reconciler", daemon=True).start()
    return stop
