"""The SSH command set. Each handler gets a Context and its parsed arguments; it returns an exit code.

Handlers run in a worker thread (etcd and docker calls block); what they print streams to the
client as it is written. Listings print plain stable text when piped, a rich table on a pty, and
JSON with --json.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from appliance import pipeline
from appliance.errors import Conflict, PermissionDenied, UsageError
from appliance.names import check_app
from appliance.output import Output
from appliance.settings import Settings
from gitserver import repos
from gitserver.cli import Registry
from releaser import apps, releases
from releaser.apps import App, User
from releaser.locks import AppLock
from releaser.store import Store

registry = Registry()
command = registry.command


@dataclass
class Context:
    settings: Settings
    store: Store
    user: User
    stdout: IO[str]
    stdin: bytes = b""
    tty: bool = False
    json: bool = False
    _platform: pipeline.Platform | None = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        return Output(self.stdout)

    @property
    def platform(self) -> pipeline.Platform:
        if self._platform is None:
            self._platform = pipeline.Platform(
                self.settings,
                self.store,
                pipeline.DockerBackend(str(self.settings.state_dir)),
                pipeline.Router(self.settings),
            )
        return self._platform

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def show(self, data: Any, headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
        """One listing, three ways: --json, a rich table on a pty, plain columns when piped."""
        if self.json:
            self.print(json.dumps(data, indent=2, sort_keys=True))
        elif self.tty:
            table = Table(title=title, title_justify="left")
            for h in headers:
                table.add_column(h)
            for row in rows:
                table.add_row(*row)
            buf = io.StringIO()
            Console(file=buf, force_terminal=True, width=120).print(table)
            self.stdout.write(buf.getvalue())
            self.stdout.flush()
        else:
            if title:
                self.print(f"=== {title}")
            widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
            for row in rows:
                self.print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())

    def app(self, args: argparse.Namespace, candidate: str | None = None) -> App:
        """Resolve the app: --app, else a first argument naming an app, else the caller's only app."""
        name = getattr(args, "app", None)
        if name:
            return apps.authorize(self.store, self.user, check_app(name))
        if candidate and apps.get_app(self.store, candidate) is not None:
            return apps.authorize(self.store, self.user, candidate)
        mine = apps.apps_for(self.store, self.user)
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise UsageError("you have no apps yet: push one (git push) or run apps:create NAME")
        raise UsageError(f"which app? use --app APP (yours: {', '.join(a.name for a in mine)})")

    def lock(self, app: str) -> AppLock:
        """The app's deploy lock, taken; a second caller sees who holds it and waits within a bound."""
        lock = AppLock(self.store, app, owner=self.user.name)
        lock.acquire(
            self.settings.lock_wait,
            on_wait=lambda h: self.out.step(
                f"waiting for {h.get('owner', 'someone')} to finish with {app}..."
            ),
        )
        return lock


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- help -------------------------------------------------------------------------------------
@command("help", "list commands, or explain one", args=lambda p: p.add_argument("command", nargs="?"))
def help_(ctx: Context, args: argparse.Namespace) -> int:
    if args.command:
        cmd = registry.lookup(args.command)
        ctx.print(f"{cmd.parser().format_usage().strip().replace('usage: ', 'usage: ssh deis ')}")
        ctx.print(f"  {cmd.summary}")
        for ex in cmd.examples:
            ctx.print(f"  example: {ex}")
        return 0
    ctx.print("Usage: ssh deis COMMAND [--app APP] [ARGS...]   (deis: your ssh alias for git@HOST -p PORT)")
    ctx.print("Deploy with: git push deis master")
    ctx.print("")
    width = max(len(n) for n in registry.commands)
    for name, cmd in sorted(registry.commands.items()):
        ctx.print(f"  {name.ljust(width)}  {cmd.summary}")
    ctx.print("")
    ctx.print("Quote values for the remote shell-like parser: ssh deis config:set \"'GREETING=hello world'\"")
    return 0


# -- apps -------------------------------------------------------------------------------------
@command("apps:list", "list the apps you can act on", aliases=("apps",))
def apps_list(ctx: Context, args: argparse.Namespace) -> int:
    mine = apps.apps_for(ctx.store, ctx.user)
    data = [{"name": a.name, "owner": a.owner, "url": ctx.settings.app_url(a.name)} for a in mine]
    ctx.show(data, ["NAME", "OWNER", "URL"], [[d["name"], d["owner"], d["url"]] for d in data], title="Apps")
    return 0


def create_app(ctx: Context, name: str) -> App:
    """Create an app owned by the caller, with its repo and initial release v1."""
    check_app(name)
    app = apps.create_app(ctx.store, name, ctx.user.name)
    repos.ensure_repo(ctx.settings, name)
    releases.initial(ctx.store, name, ctx.user.name)
    return app


@command(
    "apps:create",
    "create an app (a first git push creates it too)",
    args=lambda p: p.add_argument("name"),
    examples=["ssh deis apps:create myapp"],
)
def apps_create(ctx: Context, args: argparse.Namespace) -> int:
    create_app(ctx, args.name)
    ctx.out.step(
        f"created {args.name}; deploy with: git push ssh://git@HOST:{ctx.settings.ssh_port}/"
        f"{args.name}.git master"
    )
    return 0


@command(
    "apps:info",
    "show an app: owner, release, URL, formation",
    app=True,
    args=lambda p: p.add_argument("name", nargs="?"),
)
def apps_info(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args, args.name)
    current = releases.latest(ctx.store, app.name)
    data = {
        "name": app.name,
        "owner": app.owner,
        "created": _when(app.created),
        "url": ctx.settings.app_url(app.name),
        "release": current.label if current else None,
        "formation": apps.get_formation(ctx.store, app.name),
    }
    rows = [[k, json.dumps(v) if isinstance(v, dict) else str(v)] for k, v in data.items()]
    ctx.show(data, ["FIELD", "VALUE"], rows, title=f"{app.name} Application")
    return 0


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


# -- authorization of git access ----------------------------------------------------------------
def authorize_push(ctx: Context, app_name: str) -> App:
    """The app a push goes to; a user's first push to a free name creates it (owned by them)."""
    check_app(app_name)
    app = apps.get_app(ctx.store, app_name)
    if app is None:
        try:
            return create_app(ctx, app_name)
        except Conflict:
            app = apps.require_app(ctx.store, app_name)
    if not apps.can_access(ctx.store, ctx.user, app):
        raise PermissionDenied(f"{ctx.user.name} may not push to {app_name}")
    return app


def authorize_fetch(ctx: Context, app_name: str) -> App:
    return apps.authorize(ctx.store, ctx.user, check_app(app_name))
