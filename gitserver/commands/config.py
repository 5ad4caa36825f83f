"""config, config:set, config:unset, config:push, config:pull: every change is a new release, rolled
out like a push."""

from __future__ import annotations

import argparse
import shlex

from core.errors import UsageError, ValidationError
from gitserver import dotenv
from gitserver.commands.base import Context, command
from releaser import releases
from releaser.apps import App


# -- config -----------------------------------------------------------------------------------
def _config_changed(ctx: Context, app: App, changes: dict[str, str | None], summary: str) -> int:
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        config = releases.apply_config(current.config if current else {}, changes)
        ctx.new_release(app.name, summary, config=config)
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
    examples=["ssh deis config --app myapp", "ssh deis config --oneline --app myapp"],
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
    examples=["ssh deis config:unset GREETING DATABASE_URL --app myapp"],
)
def config_unset(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes: dict[str, str | None] = dict.fromkeys(args.keys)
    return _config_changed(ctx, app, changes, f"{ctx.user.name} removed {', '.join(args.keys)}")


# -- .env files -------------------------------------------------------------------------------
@command(
    "config:push",
    "set config vars from a .env file on stdin (KEY=value lines): a new release",
    app=True,
    stdin=True,
    args=lambda p: p.add_argument(
        "--replace", action="store_true", help="also unset the vars that the file does not set"
    ),
    examples=["ssh deis config:push --app myapp < .env", "ssh deis config:push --replace --app myapp < .env"],
)
def config_push(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    try:
        text = ctx.stdin.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"the .env file is not UTF-8 text (byte {exc.start})") from exc
    pushed = dotenv.parse(text)
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        old = current.config if current else {}
        changes: dict[str, str | None] = {k: v for k, v in pushed.items() if old.get(k) != v}
        if args.replace:
            changes.update(dict.fromkeys(k for k in old if k not in pushed))
        if not changes:
            ctx.out.step(f"{app.name}'s config already matches; no new release")
            return 0
        config = releases.apply_config(old, changes)
        summary = f"{ctx.user.name} pushed config {', '.join(sorted(changes))}"
        ctx.new_release(app.name, summary, config=config)
    return 0


@command(
    "config:pull",
    "print the config as a .env file that config:push reads back exactly",
    app=True,
    examples=["ssh deis config:pull --app myapp > .env"],
)
def config_pull(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    current = releases.latest(ctx.store, app.name)
    ctx.stdout.write(dotenv.render(current.config if current else {}))
    ctx.stdout.flush()
    return 0
