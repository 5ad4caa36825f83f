"""logs: the app's log store (releaser.logstore: every line its containers, builds and release phases
wrote, kept after the containers are gone) merged with its platform events; -f follows.

    APP[web.1]: GET /path
    APP[deis]: alice scaled web=3

Filters: --type web (web.1, web.2), --source web.1, --release v7, --since 1h, --grep TEXT; -n counts
the lines shown after filtering. --json (every command's flag) prints one object a line: time, source,
release, text.
`-f` reads the store from where the history ended, so no line is shown twice or skipped, whatever
deploys in between; events (releaser.events) are looked at every POLL seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass

from core.errors import ValidationError
from gitserver.commands.base import Context, command
from releaser import events
from releaser.events import Event
from releaser.logstore import Line, LogStore, Position
from releaser.releases import parse_version

POLL = 0.5  # how often -f looks for new platform events
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, order=True)
class Entry:
    time: float
    source: str  # "web.1", "build", "release" or "deis"
    text: str
    release: int = 0


def render(app: str, entry: Entry) -> str:
    return f"{app}[{entry.source}]: {entry.text}"


def render_json(app: str, entry: Entry) -> str:
    rel = f"v{entry.release}" if entry.release else None
    return json.dumps(
        {"time": entry.time, "app": app, "source": entry.source, "release": rel, "text": entry.text}
    )


def from_event(e: Event) -> Entry:
    return Entry(e.time, "deis", e.message)


def from_line(ln: Line) -> Entry:
    return Entry(ln.time, ln.source, ln.text, ln.release)


def merge(lines: list[Entry], limit: int | None) -> list[Entry]:
    """Ordered by time (stable for equal times), the last `limit` only."""
    ordered = sorted(lines, key=lambda e: e.time)
    return ordered[-limit:] if limit else ordered


def _lines_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of lines (1 or more), got {text!r}")
    return int(text)


def duration(text: str) -> float:
    """`90s`, `15m`, `1h`, `2d` as seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 15m, 1h or 2d, got {text!r}")
    return int(m[1]) * _UNITS[m[2]]


def _release_arg(text: str) -> int:
    try:
        return parse_version(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"expected a release like v7, got {text!r}") from exc


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--lines", type=_lines_arg, default=100, help="how many lines (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until you hang up")
    p.add_argument("--type", "-t", dest="ptype", metavar="TYPE", help="only this process type's output")
    p.add_argument(
        "--source", "-s", metavar="SOURCE", help="only this source: web.1, run.3, build, release, deis"
    )
    p.add_argument("--release", "-r", type=_release_arg, metavar="vN", help="only lines of this release")
    p.add_argument("--since", type=duration, metavar="AGE", help="only lines this recent: 30s, 15m, 1h, 2d")
    p.add_argument("--grep", "-g", metavar="TEXT", help="only lines that contain TEXT")


@dataclass(frozen=True)
class Filter:
    ptype: str | None = None
    source: str | None = None
    release: int | None = None
    after: float | None = None  # UNIX time
    grep: str | None = None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Filter:
        after = time.time() - args.since if args.since is not None else None
        return cls(args.ptype, args.source, args.release, after, args.grep)

    def __call__(self, e: Entry | Line) -> bool:
        return (
            (self.ptype is None or e.source.split(".")[0] == self.ptype)
            and (self.source is None or e.source == self.source)
            and (self.release is None or e.release == self.release)
            and (self.after is None or e.time >= self.after)
            and (self.grep is None or self.grep in e.text)
        )

    @property
    def events(self) -> bool:
        """Whether platform events can pass (they have no release)."""
        return self.release is None and self.ptype in (None, "deis") and self.source in (None, "deis")


@command(
    "logs",
    "show an app's output (kept after its containers are gone) and platform events; -f follows",
    app=True,
    args=_args,
    examples=[
        "ssh deis logs -n 50 --app myapp",
        "ssh deis logs -f --type web --app myapp",
        "ssh deis logs --release v7 --grep Traceback --since 1h --app myapp",
    ],
)
def logs(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args).name
    keep = Filter.of(args)
    show = render_json if ctx.json else render
    store = ctx.platform.logs
    since = time.time()
    pos = store.end(app)
    entries = [from_line(ln) for ln in store.lines(app, args.lines, keep, upto=pos)]
    seen: set[Event] = set()
    if keep.events:
        recent = events.recent(ctx.store, app)
        seen.update(recent)
        entries += [e for e in map(from_event, recent) if keep(e)][-args.lines :]
    for entry in merge(entries, args.lines):
        ctx.print(show(app, entry))
    if args.follow:
        _follow(ctx, store, app, pos, keep, seen, since, ctx.json)
    return 0


def _follow(
    ctx: Context,
    store: LogStore,
    app: str,
    pos: Position,
    keep: Filter,
    seen: set[Event],
    since: float,
    as_json: bool,
) -> None:
    """New lines from `pos` on, and new events, until the client hangs up."""
    show = render_json if as_json else render
    next_poll = time.monotonic() + POLL
    while not ctx.closed.is_set():
        lines, pos = store.read_from(app, pos)
        for ln in lines:
            if keep(ln):
                ctx.print(show(app, from_line(ln)))
        if keep.events and time.monotonic() >= next_poll:
            next_poll = time.monotonic() + POLL
            for e in events.recent(ctx.store, app):
                if e not in seen and e.time >= since - 1:
                    seen.add(e)
                    if keep(from_event(e)):
                        ctx.print(show(app, from_event(e)))
        if not lines:
            store.wait(0.25)
