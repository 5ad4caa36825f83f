"""scheduler, scheduler:set: which backend runs the apps (Deis v1's `schedulerModule`), platform-wide.

Switching moves every app's running release to the new backend with no failed request
(appliance.switch); only admins may switch.
"""

from __future__ import annotations

import argparse

from appliance import switch
from core.errors import PermissionDenied
from gitserver.commands.base import Context, command
from releaser import platform as platform_config


@command("scheduler", "show which scheduler runs the apps", examples=["ssh deis scheduler"])
def scheduler_show(ctx: Context, args: argparse.Namespace) -> int:
    current = platform_config.scheduler(ctx.store)
    data = {"scheduler": current, "choices": list(switch.CHOICES)}
    ctx.show(data, ["SCHEDULER", "CHOICES"], [[current, " ".join(switch.CHOICES)]])
    return 0


@command(
    "scheduler:set",
    f"move every app to another scheduler ({' or '.join(switch.CHOICES)}) with zero downtime (admins)",
    args=lambda p: p.add_argument("name", metavar="NAME", choices=switch.CHOICES),
    examples=["ssh deis scheduler:set swarm"],
)
def scheduler_set(ctx: Context, args: argparse.Namespace) -> int:
    if not ctx.user.admin:
        raise PermissionDenied("only an admin may change the scheduler")
    if switch.switch(ctx.platform, args.name, ctx.user.name, ctx.out):
        ctx.out.step(f"done: apps run on the {args.name} scheduler")
    else:
        ctx.out.step(f"apps already run on the {args.name} scheduler")
    return 0
