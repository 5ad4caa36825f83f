"""ps, ps:scale (scale), ps:restart: the running release's containers, without a new release (Deis v1)."""

from __future__ import annotations

import argparse
import time

from appliance import operations
from core.errors import UsageError
from core.names import check_process_type
from gitserver.commands.base import Context, command, when


def parse_scale(items: list[str]) -> dict[str, int]:
    """`web=3 worker=0` -> {"web": 3, "worker": 0}; a one-line UsageError for anything else."""
    changes: dict[str, int] = {}
    for item in items:
        ptype, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"expected TYPE=N (N a number, 0 or more), got {item!r}")
        changes[check_process_type(ptype)] = int(count)
    return changes


def parse_target(text: str | None) -> tuple[str | None, int | None]:
    """`web` -> ("web", None), `web.2` -> ("web", 2), nothing -> (None, None)."""
    if text is None:
        return None, None
    ptype, sep, num = text.partition(".")
    if sep and not num.isdigit():
        raise UsageError(f"expected TYPE or TYPE.NUM, like web or web.2, got {text!r}")
    return check_process_type(ptype), int(num) if sep else None


def uptime(started: float, now: float) -> str:
    """How long since `started` (UNIX time), as 3d4h, 2h5m, 4m12s or 9s; '' if it never started."""
    if started <= 0:
        return ""
    secs = max(0, int(now - started))
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{mins}m"
    if mins:
        return f"{mins}m{secs}s"
    return f"{secs}s"


@command(
    "ps", "list an app's processes", app=True, aliases=("ps:list",), examples=["ssh deis ps --app myapp"]
)
def ps_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    now = time.time()
    data = [
        {
            "process": f"{i.name.type}.{i.name.num}",
            "type": i.name.type,
            "num": i.name.num,
            "state": i.state,
            "release": f"v{i.name.version}",
            "started": when(i.started) if i.running and i.started > 0 else "",
            "uptime": uptime(i.started, now) if i.running else "",
            "container": str(i.name),
            "id": i.id,
            "node": i.node,
        }
        for i in operations.processes(ctx.platform, app.name)
    ]
    data.sort(key=lambda d: (d["type"], d["num"], d["release"]))
    # Which node each runs on, from backends that place on several (swarm).
    columns = ["process", "state", "release", "uptime", "container"] + (
        ["node"] if any(d["node"] for d in data) else []
    )
    rows = [[str(d[k]) for k in columns] for d in data]
    ctx.show(data, [c.upper() for c in columns], rows, title=f"{app.name} Processes")
    return 0


@command(
    "ps:scale",
    "scale process types (Procfile types, or cmd for the image's own command); no new release",
    app=True,
    args=lambda p: p.add_argument("assignments", nargs="+", metavar="TYPE=N"),
    aliases=("scale",),
    examples=["ssh deis scale web=3 worker=1 --app myapp"],
)
def ps_scale(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes = parse_scale(args.assignments)
    with ctx.lock(app.name):
        operations.scale(ctx.platform, app.name, changes, ctx.user.name, ctx.out)
    return 0


@command(
    "ps:restart",
    "restart processes (all, one TYPE, or TYPE.NUM); routed ones with zero downtime",
    app=True,
    args=lambda p: p.add_argument("target", nargs="?", metavar="TYPE[.NUM]"),
    examples=["ssh deis ps:restart web.1 --app myapp"],
)
def ps_restart(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    ptype, num = parse_target(args.target)
    with ctx.lock(app.name):
        operations.restart(ctx.platform, app.name, ptype, num, ctx.user.name, ctx.out)
    return 0
