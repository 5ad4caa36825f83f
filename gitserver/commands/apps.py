"""help, apps:*, and who may push or fetch which repository."""

from __future__ import annotations

import argparse

from appliance import operations
from core.errors import Conflict, PermissionDenied, UsageError
from core.names import check_app
from gitserver import repos
from gitserver.commands.base import Context, command, registry, when
from releaser import apps, releases
from releaser.apps import App


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
    operations.reclaim_name(ctx.platform, name)
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


def named_app(ctx: Context, args: argparse.Namespace) -> App:
    """`apps:info NAME` / `apps:destroy NAME`: an explicit NAME must exist (no fallback to another app)."""
    if args.name and args.app and args.name != args.app:
        raise UsageError(f"two apps given: {args.name} and --app {args.app}")
    if args.name:
        return apps.authorize(ctx.store, ctx.user, args.name)
    return ctx.app(args)


@command(
    "apps:info",
    "show an app: owner, collaborators, release, build, URL, formation, containers",
    app=True,
    args=lambda p: p.add_argument("name", nargs="?"),
    examples=["ssh deis apps:info myapp"],
)
def apps_info(ctx: Context, args: argparse.Namespace) -> int:
    app = named_app(ctx, args)
    current = releases.latest(ctx.store, app.name)
    build = current.build if current else None
    collaborators = apps.collaborators(ctx.store, app.name)
    formation = apps.get_formation(ctx.store, app.name)
    instances = operations.processes(ctx.platform, app.name)
    running = sum(i.running for i in instances)
    url = ctx.settings.app_url(app.name)
    data = {
        "name": app.name,
        "owner": app.owner,
        "collaborators": collaborators,
        "created": when(app.created),
        "url": url,
        "release": current.label if current else None,
        "build": None if build is None else {"image": build.image, "kind": build.kind, "sha": build.sha},
        "formation": formation,
        "containers": {"running": running, "total": len(instances)},
    }
    rows = [
        ["name", app.name],
        ["owner", app.owner],
        ["collaborators", ", ".join(collaborators) or "-"],
        ["created", when(app.created)],
        ["url", url],
        ["release", current.label if current else "-"],
        ["build", "-" if build is None else f"{build.image} ({build.kind}, {(build.sha or '-')[:7]})"],
        ["formation", " ".join(f"{t}={n}" for t, n in sorted(formation.items())) or "-"],
        ["containers", f"{running} running of {len(instances)}"],
    ]
    ctx.show(data, ["FIELD", "VALUE"], rows, title=f"{app.name} Application")
    return 0


@command(
    "apps:destroy",
    "destroy an app for good: containers, images, repository, route, config (owner or admin)",
    app=True,
    args=lambda p: (p.add_argument("name", nargs="?"), p.add_argument("--confirm", metavar="APP")),
    aliases=("destroy",),
    examples=["ssh deis apps:destroy myapp --confirm myapp"],
)
def apps_destroy(ctx: Context, args: argparse.Namespace) -> int:
    app = named_app(ctx, args)
    apps.require_manager(ctx.store, ctx.user, app, "destroy it")
    if args.confirm != app.name:
        raise UsageError(
            f"destroying {app.name} removes its containers, images, repository and config for good;"
            f" to go ahead: apps:destroy {app.name} --confirm {app.name}"
        )
    with ctx.lock(app.name):
        operations.destroy(ctx.platform, app.name, ctx.out, lambda a: repos.remove_repo(ctx.settings, a))
    return 0


# -- authorization of git access ----------------------------------------------------------------
def authorize_push(ctx: Context, app_name: str) -> App:
    """The app a push goes to; a user's first push to a free name creates it (owned by them)."""
    check_app(app_name)
    app = apps.get_app(ctx.store, app_name)
    if app is None:
        operations.reclaim_name(ctx.platform, app_name)  # its Conflict is not the creation race below
        try:
            return create_app(ctx, app_name)
        except Conflict:
            app = apps.require_app(ctx.store, app_name)
    if not apps.can_access(ctx.store, ctx.user, app):
        raise PermissionDenied(f"{ctx.user.name} may not push to {app_name}")
    return app


def authorize_fetch(ctx: Context, app_name: str) -> App:
    return apps.authorize(ctx.store, ctx.user, check_app(app_name))
