"""logs: the app's container output merged with its platform events, ordered by time; -f follows.

    APP[web.1]: GET /path
    APP[deis]: alice scaled web=3

Container output is what the engine keeps of the app's current containers (retired releases take
theirs with them); events are releaser.events (30 days).
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from dataclasses import dataclass, field

from appliance import operations
from gitserver.commands.base import Context, command
from releaser import events
from releaser.events import Event
from scheduler.base import Instance, LogStream

POLL = 0.5  # how often -f looks for new containers and events
BACKLOG = 10000  # lines -f holds for a slow client; beyond it the containers' streams wait


@dataclass(frozen=True, order=True)
class Entry:
    time: float
    source: str  # "web.1" or "deis"
    text: str


def render(app: str, entry: Entry) -> str:
    return f"{app}[{entry.source}]: {entry.text}"


def source(inst: Instance) -> str:
    return f"{inst.name.type}.{inst.name.num}"


def from_event(e: Event) -> Entry:
    return Entry(e.time, "deis", e.message)


def merge(lines: list[Entry], limit: int | None) -> list[Entry]:
    """Ordered by time (stable for equal times), the last `limit` only."""
    ordered = sorted(lines, key=lambda e: e.time)
    return ordered[-limit:] if limit else ordered


def _lines_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of lines (1 or more), got {text!r}")
    return int(text)


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--lines", type=_lines_arg, default=100, help="how many lines (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until you hang up")
    p.add_argument("--type", "-t", dest="ptype", metavar="TYPE", help="only this process type's output")


@command(
    "logs",
    "show an app's output and platform events; -f follows across deploys",
    app=True,
    args=_args,
    examples=["ssh deis logs -n 50 --app myapp", "ssh deis logs -f --type web --app myapp"],
)
def logs(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args).name
    since = time.time()
    current = [i for i in operations.processes(ctx.platform, app) if args.ptype in (None, i.name.type)]
    entries: list[Entry] = []
    read_up_to: dict[str, float] = {}  # container id -> time of the last line read
    for inst in current:
        stream = operations.output(ctx.platform, inst, tail=args.lines)
        got = [Entry(ln.time, source(inst), ln.text) for ln in stream]
        read_up_to[inst.id] = got[-1].time if got else since
        entries += got
    seen: set[Event] = set()
    if args.ptype is None:
        recent = events.recent(ctx.store, app)
        seen.update(recent)
        entries += [from_event(e) for e in recent[-args.lines :]]
    for entry in merge(entries, args.lines):
        ctx.print(render(app, entry))
    if args.follow:
        _Follower(ctx, app, args.ptype, read_up_to, seen, since).run()
    return 0


@dataclass
class _Follower:
    """`logs -f`: new output and events until the client hangs up. Instances are picked up as they
    appear (a deploy, a scale, a restart), with all of their output; one thread per stream."""

    ctx: Context
    app: str
    ptype: str | None
    read_up_to: dict[str, float]  # instance id -> time of the last line already shown
    seen: set[Event]
    since: float
    lines: queue.Queue[Entry] = field(default_factory=lambda: queue.Queue(BACKLOG))
    followed: dict[str, tuple[LogStream, threading.Thread]] = field(default_factory=dict)

    def run(self) -> None:
        try:
            next_poll = 0.0
            while not self.ctx.closed.is_set():
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL
                    self._look()
                try:
                    entry = self.lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                self.ctx.print(render(self.app, entry))
        finally:
            for stream, _ in self.followed.values():
                stream.close()
            for _, t in self.followed.values():
                t.join(timeout=2)

    def _look(self) -> None:
        listed = operations.processes(self.ctx.platform, self.app)
        for inst in listed:
            if inst.id not in self.followed and self.ptype in (None, inst.name.type):
                self._watch(inst)
        # Forget instances that are gone and whose stream ended, so a follow across many deploys
        # stays small.
        ids = {i.id for i in listed}
        for cid in [c for c, (_, t) in self.followed.items() if c not in ids and not t.is_alive()]:
            del self.followed[cid]
        if self.ptype is None:
            for e in events.recent(self.ctx.store, self.app):
                if e not in self.seen and e.time >= self.since - 1:
                    self.seen.add(e)
                    self.ctx.print(render(self.app, from_event(e)))

    def _watch(self, inst: Instance) -> None:
        # Known at the start: from the last line read on. New: everything it wrote.
        after = self.read_up_to.get(inst.id)
        stream = operations.output(self.ctx.platform, inst, follow=True, since=after)
        t = threading.Thread(
            target=self._pump, args=(stream, source(inst), after), name=f"logs-{inst.name}", daemon=True
        )
        t.start()
        self.followed[inst.id] = (stream, t)

    def _pump(self, stream: LogStream, src: str, after: float | None) -> None:
        for ln in stream:
            if after is None or ln.time > after:  # `since` includes the last line already shown
                entry = Entry(ln.time, src, ln.text)
                while not self.ctx.closed.is_set():
                    try:
                        self.lines.put(entry, timeout=0.5)  # back-pressure: a full backlog waits
                        break
                    except queue.Full:
                        continue
