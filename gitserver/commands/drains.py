"""drains, drains:add, drains:remove: where an app's log lines are forwarded (appliance.drains).

Kinds (releaser.drains): `syslog://HOST:PORT` (TCP, RFC 5424, octet-counted),
`syslog+tls://HOST:PORT` (the same over TLS) and `https://HOST[:PORT]/PATH` (batched POSTs, Heroku's
logplex format). `drains` shows what each drain delivered, what it holds (queued) and what it dropped
(its queue was full: the drain was down or slow; or it refused a batch); a drain that is down never
holds up the app or its logs.
"""

from __future__ import annotations

import argparse

from gitserver.commands.base import Context, command
from releaser import drains, events


def _url(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST/PATH")


@command(
    "drains",
    "list an app's log drains with what each delivered, holds and dropped",
    app=True,
    aliases=("drains:list",),
    examples=["ssh deis drains --app myapp"],
)
def drains_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    status = ctx.platform.drains.status(app.name)
    data: list[dict[str, object]] = []
    for url in drains.list_urls(ctx.store, app.name):
        s = status.get(url)
        data.append(
            {
                "url": url,
                "delivered": s.delivered if s else 0,
                "queued": len(s.queue) if s else 0,
                "dropped": s.dropped if s else 0,
                "error": s.error if s else "",
            }
        )
    rows = [[str(d[k]) for k in ("url", "delivered", "queued", "dropped", "error")] for d in data]
    ctx.show(data, ["URL", "DELIVERED", "QUEUED", "DROPPED", "LAST ERROR"], rows, title=f"{app.name} Drains")
    return 0


@command(
    "drains:add",
    "forward every line of the app's logs to a syslog server (TCP or TLS) or an HTTPS endpoint",
    app=True,
    args=_url,
    examples=[
        "ssh deis drains:add syslog+tls://logs.example.com:6514 --app myapp",
        "ssh deis drains:add https://user:token@logs.example.com/ingest --app myapp",
    ],
)
def drains_add(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    drain = drains.parse(args.url, ctx.settings)
    drains.add(ctx.store, app.name, drain)
    ctx.platform.drains.refresh(app.name)
    shown = drains.redacted(drain.url)
    events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} added drain {shown}")
    ctx.out.step(f"{app.name} drains to {shown}")
    return 0


@command(
    "drains:remove",
    "stop forwarding the app's logs to a drain",
    app=True,
    args=_url,
    examples=["ssh deis drains:remove syslog://logs.example.com:514 --app myapp"],
)
def drains_remove(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    drains.remove(ctx.store, app.name, args.url)
    ctx.platform.drains.refresh(app.name)
    shown = drains.redacted(args.url)
    events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} removed drain {shown}")
    ctx.out.step(f"{app.name} no longer drains to {shown}")
    return 0
