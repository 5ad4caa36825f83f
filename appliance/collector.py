"""The log collector: every app container's output goes to the log store (releaser.logstore) from its
start until it is removed. It runs in the appliance (`deis serve`) as threads:

- one follows the backend's events: a container that starts (or starts again: a crash loop keeps its
  id) is followed; whenever the stream is (re)joined, every container of the platform is looked at;
- one per container reads its output with the backend's log API, resuming from the store's cursor
  for it (`since` = the cursor's time, the lines of that time already kept are skipped), so a
  restart of the appliance misses nothing and repeats nothing;
- before a container is removed (`Backend.removing`: retire, scale down, restarts, the reconciler's
  removals, destroy) the rest of its output is read: its follower's stream ends once it stopped, and
  the removal waits for it (at most DRAIN_WAIT); without a follower, one catch-up read.

One-off `run` containers are followed from their start too, but one that exits within moments may be
removed (`--rm`) before its follower reads it. The release phase's output is recorded by the pipeline
as it relays it (`Recorded`), builds' output likewise.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from appliance.platform import Platform
from core.output import Output
from releaser.logstore import Cursor, Line, LogStore, advance
from scheduler.base import Backend, EventStream, Instance, LogStream

log = logging.getLogger("deis.logs")

RETRY = 1.0
DRAIN_WAIT = 10.0  # how long a removal waits for a container's last lines
GONE_KEPT = 120.0  # seconds a removed container's id stays known (so nothing follows it again)
SKIPPED_TYPES = ("release",)  # recorded by the pipeline as it relays them


def source(inst: Instance) -> str:
    return f"{inst.name.type}.{inst.name.num}"


@dataclass
class _Follower:
    inst: Instance
    again: bool = False  # it started again while being followed: follow once more
    stream: LogStream | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Collector:
    def __init__(self, p: Platform) -> None:
        self.p = p
        self.store: LogStore = p.logs
        self._lock = threading.Lock()
        self._followers: dict[str, _Follower] = {}
        self._cursors: dict[str, Cursor] = {}  # ahead of the store's: lines still in its buffer
        self._gone: dict[str, float] = {}  # id -> when it was drained: never followed again
        self._stop = threading.Event()
        self._events: EventStream | None = None

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        backend = self._backend(stop)
        if backend is None:
            return
        self.p.backend_changed.append(self._switched)
        threading.Thread(target=self._load_drains, args=(stop,), name="drains-load", daemon=True).start()
        closer = threading.Thread(target=self._close_on, args=(stop,), name="logs-stop", daemon=True)
        closer.start()
        while not stop.is_set():
            try:
                backend = self.p.backend  # another one after scheduler:set
                backend.removing = self.drain
                self._events = stream = backend.events()
                self.catch_up(backend)
                for event in stream:
                    if event.action == "start":
                        self.watch_id(event.id)
            except Exception as exc:  # the engine went away: follow it again
                log.warning("log collector: %s", exc)
            stop.wait(RETRY)

    def _switched(self) -> None:
        """The platform moved to another backend: follow that one's events from now on."""
        events = self._events
        if events is not None:
            events.close()

    def _backend(self, stop: threading.Event) -> Backend | None:
        while not stop.is_set():
            try:
                return self.p.backend
            except Exception as exc:  # etcd still coming up
                log.warning("log collector waits for the platform: %s", exc)
                stop.wait(RETRY)
        return None

    def _load_drains(self, stop: threading.Event) -> None:
        """From then on every line written goes to the apps' drains too."""
        while not stop.is_set():
            try:
                self.p.drains.load_all()
                return
            except Exception as exc:
                log.warning("log drains not loaded yet: %s", exc)
                stop.wait(RETRY)

    def _close_on(self, stop: threading.Event) -> None:
        stop.wait()
        with self._lock:
            streams = [f.stream for f in self._followers.values() if f.stream is not None]
        for s in [self._events, *streams]:
            if s is not None:
                s.close()

    def catch_up(self, backend: Backend) -> None:
        """Every container of the platform: followed, or (exited) its output read to the end."""
        for inst in backend.instances():
            self.watch(inst)

    def watch_id(self, cid: str) -> None:
        inst = self.p.backend.inspect(cid)
        if inst is not None:
            self.watch(inst)

    def watch(self, inst: Instance) -> None:
        if inst.name.type in SKIPPED_TYPES:
            return
        with self._lock:
            if inst.id in self._gone:
                return
            if inst.id in self._followers:
                self._followers[inst.id].again = True
                return
            f = self._followers[inst.id] = _Follower(inst)
        threading.Thread(target=self._follow, args=(f,), name=f"logs-{inst.name}", daemon=True).start()

    # -- one container -------------------------------------------------------------------------
    def _follow(self, f: _Follower) -> None:
        cid = f.inst.id
        try:
            while not self._stop.is_set():
                f.again = False
                self._read(f.inst, follow=True, f=f)
                now = self.p.backend.inspect(cid)
                with self._lock:
                    if f.again and cid not in self._gone:
                        continue
                    if now is None or not now.running or cid in self._gone or self._stop.is_set():
                        # Decided and forgotten at once: a start seen from now on gets a new follower.
                        self._followers.pop(cid, None)
                        return
        except Exception:
            log.exception("following the output of %s", f.inst.name)
        finally:
            with self._lock:
                if self._followers.get(cid) is f:
                    del self._followers[cid]
            f.done.set()

    def _read(self, inst: Instance, *, follow: bool, f: _Follower | None = None) -> None:
        """The container's output after its cursor, into the store (until it stops, with `follow`)."""
        app, cid = inst.name.app, inst.id
        cur = self._cursors.get(cid) or self.store.cursor(app, cid)
        since = cur[0] - 0.001 if cur[0] else None  # the engine's `since` is inclusive; rounding
        stream = self.p.backend.logs(cid, follow=follow, since=since)
        if f is not None:
            f.stream = stream
            if self._stop.is_set():
                stream.close()
        src, rel = source(inst), inst.name.version
        t0, skip = cur
        newest: set[str] = set()  # the texts read at time cur[0]
        try:
            for ln in stream:
                if ln.time < cur[0] or (ln.time == cur[0] and ln.text in newest):
                    # Kept already: a resume's overlap, or the engine sending a rotated log file's
                    # lines again (its json-file follow does when a file rotates under a reader).
                    continue
                if ln.time == t0 and skip:
                    skip -= 1
                    continue
                self.store.append(app, [Line(ln.time, src, rel, ln.text, cid)])
                if ln.time > cur[0]:
                    newest = set()
                newest.add(ln.text)
                cur = self._cursors[cid] = advance(cur, ln.time)
        finally:
            stream.close()

    def drain(self, cid: str) -> None:
        """Backend.removing: the container stopped; keep the rest of its output before it goes."""
        now = time.monotonic()
        with self._lock:
            self._gone = {k: t for k, t in self._gone.items() if now - t < GONE_KEPT}
            self._gone[cid] = now
            f = self._followers.get(cid)
        inst = f.inst if f is not None else self.p.backend.inspect(cid)
        if f is not None:
            if not f.done.wait(DRAIN_WAIT):
                log.warning("the output of %s was still being read when it was removed", f.inst.name)
                if f.stream is not None:
                    f.stream.close()
        elif inst is not None and inst.name.type not in SKIPPED_TYPES:
            self._read(inst, follow=False)
        if inst is not None:
            self.store.forget_cursor(inst.name.app, cid)
        self._cursors.pop(cid, None)


class Recorded(Output):
    """An Output that also keeps what it writes in the app's log store (a build's output, say)."""

    def __init__(self, out: Output, store: LogStore, app: str, src: str, release: int = 0) -> None:
        super().__init__(out.stream)
        self.out, self.store, self.app, self.src, self.release = out, store, app, src, release

    def _write(self, text: str) -> None:
        self.out._write(text)
        self.store.append(self.app, [Line(time.time(), self.src, self.release, text.rstrip("\n"))])


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=Collector(p).run, args=(stop,), name="log-collector", daemon=True).start()
    return stop
