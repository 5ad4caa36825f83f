"""config, config:set, config:unset: every change is a new release, rolled out like a push."""

from __future__ import annotations

import argparse
import shlex

from appliance import pipeline
from appliance.errors import UsageError
from gitserver.commands.base import Context, command
from releaser import releases
from releaser.apps import App


# -- config -----------------------------------------------------------------------------------
def _config_changed(ctx: Context, app: App, changes: dict[str, str | None], summary: str) -> int:
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        config = releases.apply_config(current.config if current else {}, changes)
        release = releases.prepare(ctx.store, app.name, by=ctx.user.name, summary=summary, config=config)
        pipeline.roll_out(ctx.platform, release, ctx.out)
    return 0


def _parse_assignments(items: list[str]) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=value, got {item!r}")
        changes[key] = value
    return changes


@command(
    "config",
    "list an app's config vars",
    app=True,
    args=lambda p: p.add_argument("--oneline", action="store_true"),
    aliases=("config:list",),
)
def config_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    current = releases.latest(ctx.store, app.name)
    config = current.config if current else {}
    if args.oneline and not ctx.json:
        ctx.print(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(config.items())))
        return 0
    ctx.show(
        config, ["KEY", "VALUE"], [[k, v] for k, v in sorted(config.items())], title=f"{app.name} Config"
    )
    return 0


@command(
    "config:set",
    "set config vars: a new release, rolled out with zero downtime",
    app=True,
    args=lambda p: p.add_argument("assignments", nargs="+", metavar="KEY=value"),
    examples=["ssh deis config:set DATABASE_URL=postgres://db/app \"'GREETING=hello world'\""],
)
def config_set(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes = _parse_assignments(args.assignments)
    return _config_changed(ctx, app, changes, f"{ctx.user.name} added {', '.join(changes)}")


@command(
    "config:unset",
    "unset config vars: a new release",
    app=True,
    args=lambda p: p.add_argument("keys", nargs="+", metavar="KEY"),
)
def config_unset(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes: dict[str, str | None] = dict.fromkeys(args.keys)
    return _config_changed(ctx, app, changes, f"{ctx.user.name} removed {', '.join(args.keys)}")


