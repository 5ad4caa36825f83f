"""An in-memory backend for tests: instances are records, images are `Program`s that say what an
instance of them does (listen or not, crash after N seconds, print lines, exit with a status).

It passes the same conformance suite as the docker backend (tests/scheduler/test_conformance.py),
so the pipeline's paths (a health check that never passes, a crash loop, a failing release
phase) can be tested without an engine, deterministically.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from core.errors import DeployError
from scheduler.base import Backend, Event, Instance, LogLine, ProcessSpec, Stdio, Usage


@dataclass(frozen=True)
class Program:
    """What an instance of an image does."""

    listens: bool = True  # accepts TCP connections on $PORT once started
    crash_after: float | None = None  # seconds after each start it exits (then restarts, unless one-off)
    output: Callable[[ProcessSpec], str] = lambda spec: ""  # what it prints when it starts
    exit_code: int = 0  # a one-off's exit status
    hangs: bool = False  # a one-off that runs until it is stopped
    refuse_start: str = ""  # start fails with this message (an engine error)


@dataclass
class _Record:
    spec: ProcessSpec
    id: str
    started: float
    endpoint: str | None
    lines: list[LogLine] = field(default_factory=list)
    restarts: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)


class MemoryBackend(Backend):
    name: ClassVar[str] = "memory"

    def __init__(self, programs: dict[str, Program] | None = None, clock: Callable[[], float] = time.time):
        self.programs = dict(programs or {})
        self.clock = clock
        self.started: list[ProcessSpec] = []  # every start, in order (tests read it)
        self._records: dict[str, _Record] = {}  # id -> record
        self._ids = itertools.count(1)
        self._ports = itertools.count(40000)
        self._changed = threading.Condition()
        self._subscribers: list[_Events] = []

    def program(self, image: str) -> Program:
        return self.programs.get(image, Program())

    # -- the interface -----------------------------------------------------------------------
    def start(self, spec: ProcessSpec) -> Instance:
        prog = self.program(spec.image)
        if prog.refuse_start:
            raise DeployError(f"could not start {spec.name}: {prog.refuse_start}")
        with self._changed:
            for rec in list(self._records.values()):  # a name held by one that is down is freed
                if rec.spec.name == spec.name and self._state(rec) != "running":
                    del self._records[rec.id]
                    self._emit(rec, "destroy")
            now = self.clock()
            rec = _Record(
                spec=spec,
                id=f"mem{next(self._ids):08d}",
                started=now,
                endpoint=f"127.0.0.1:{next(self._ports)}" if spec.port is not None else None,
                lines=[LogLine(now, t) for t in prog.output(spec).splitlines()],
            )
            self._records[rec.id] = rec
            self.started.append(spec)
            self._emit(rec, "start")
            return self._instance(rec)

    def stop(self, ref: str, grace: float) -> None:
        with self._changed:
            gone = [r for r in self._records.values() if ref in (r.id, str(r.spec.name))]
            for rec in gone:
                rec.stopped.set()
                self._emit(rec, "die")
            self._changed.notify_all()
        for rec in gone:
            if self.removing is not None:
                self.removing(rec.id)  # outside the lock: it may read the instance's output
        with self._changed:
            for rec in gone:
                if self._records.pop(rec.id, None) is not None:
                    self._emit(rec, "destroy")
            self._changed.notify_all()

    def instances(self, app: str | None = None) -> list[Instance]:
        with self._changed:
            found = [self._instance(r) for r in self._records.values() if app in (None, r.spec.name.app)]
        return sorted(found, key=lambda i: (i.name.app, i.name.version, i.name.type, i.name.num, i.started))

    def probe(self, instance: Instance) -> bool:
        with self._changed:
            rec = self._records.get(instance.id)
            return rec is not None and self._state(rec) == "running" and self.program(rec.spec.image).listens

    def usage(self, instances: list[Instance]) -> dict[str, Usage]:
        """A program here does no work: nothing but its limit to report."""
        with self._changed:
            recs = [self._records.get(i.id) for i in instances]
            return {r.id: Usage(0.0, 0, r.spec.memory) for r in recs if r and self._state(r) == "running"}

    def logs(
        self, ref: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> _Stream:
        with self._changed:
            recs = [r for r in self._records.values() if ref in (r.id, str(r.spec.name))]
        return _Stream(self, recs[-1] if recs else None, tail, follow, since)

    def run_attached(self, spec: ProcessSpec, stdio: Stdio) -> int:
        prog = self.program(spec.image)
        self.started.append(spec)
        rec = _Record(spec=spec, id=f"mem{next(self._ids):08d}", started=self.clock(), endpoint=None)
        with self._changed:
            self._records[rec.id] = rec
        try:
            text = prog.output(spec)
            if text:
                os.write(stdio.stdout, text.encode())
            if prog.hangs:
                rec.stopped.wait()
                return 137
            return prog.exit_code
        finally:
            self.stop(rec.id, 0)

    def events(self) -> _Events:
        stream = _Events(self)
        with self._changed:
            self._subscribers.append(stream)
        return stream

    # -- tests' controls ---------------------------------------------------------------------
    def emit(self, ref: str, text: str) -> None:
        """The instance `ref` prints a line."""
        with self._changed:
            for rec in self._records.values():
                if ref in (rec.id, str(rec.spec.name)):
                    rec.lines.append(LogLine(self.clock(), text))
            self._changed.notify_all()

    def kill(self, ref: str) -> None:
        """The instance dies and the backend restarts it in place (as the engine's restart policy)."""
        with self._changed:
            for rec in self._records.values():
                if ref in (rec.id, str(rec.spec.name)):
                    rec.restarts += 1
                    rec.started = self.clock()
                    self._emit(rec, "die")
                    self._emit(rec, "start")
            self._changed.notify_all()

    def _emit(self, rec: _Record, action: str) -> None:
        """Tell every open event stream (the caller holds `_changed`)."""
        event = Event(app=rec.spec.name.app, id=rec.id, action=action, time=self.clock())
        for stream in self._subscribers:
            stream.queue.append(event)
        self._changed.notify_all()

    # -- state -------------------------------------------------------------------------------
    def _state(self, rec: _Record) -> str:
        if rec.stopped.is_set():
            return "exited"  # stopped, not removed yet (`removing` is being told)
        prog = self.program(rec.spec.image)
        if prog.crash_after is not None and self.clock() - rec.started >= prog.crash_after:
            # Crashed: the engine restarts it in place, so it is seen restarting, and counted.
            # (Seen when looked at: a crash_after program's crash has no moment of its own.)
            rec.restarts += 1
            rec.started = self.clock()
            self._emit(rec, "die")
            self._emit(rec, "start")
            return "restarting"
        return "running"

    def _instance(self, rec: _Record) -> Instance:
        state = self._state(rec)
        return Instance(
            name=rec.spec.name,
            id=rec.id,
            state=state,
            endpoint=rec.endpoint,
            port=rec.spec.port,
            started=rec.started,
            restarts=rec.restarts,
            node="memory",
        )


class _Stream:
    def __init__(
        self,
        backend: MemoryBackend,
        rec: _Record | None,
        tail: int | None,
        follow: bool,
        since: float | None,
    ) -> None:
        self.backend, self.rec, self.tail, self.follow, self.since = backend, rec, tail, follow, since
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[LogLine]:
        if self.rec is None:
            return
        cond = self.backend._changed
        with cond:
            lines = [ln for ln in self.rec.lines if self.since is None or ln.time >= self.since]
            if self.tail is not None:
                lines = lines[-self.tail :] if self.tail else []
            seen = len(self.rec.lines)
        yield from lines
        while self.follow and not self._closed.is_set() and not self.rec.stopped.is_set():
            with cond:
                cond.wait(0.05)
                new, seen = self.rec.lines[seen:], len(self.rec.lines)
            yield from new

    def close(self) -> None:
        self._closed.set()


class _Events:
    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.queue: collections.deque[Event] = collections.deque()
        self.closed = False

    def __iter__(self) -> Iterator[Event]:
        cond = self.backend._changed
        while True:
            with cond:
                while not self.queue and not self.closed:
                    cond.wait()
                if self.closed:
                    return
                event = self.queue.popleft()
            yield event

    def close(self) -> None:
        with self.backend._changed:
            self.closed = True
            if self in self.backend._subscribers:
                self.backend._subscribers.remove(self)
            self.backend._changed.notify_all()
