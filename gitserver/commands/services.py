"""services:*: backing services (postgres, redis) attached to apps by a variable (appliance.addons).

services:create KIND NAME          a running service with generated credentials
services[:list], services:info     what there is (the URL only to its owner and admins)
services:destroy NAME --confirm NAME
services:link NAME -a APP [--as VAR] / services:unlink NAME -a APP   (a new release each)
services:backup NAME > dump / services:restore NAME < dump
services:connect NAME (ssh -t for a terminal), services:restart NAME, services:logs NAME [-f]
services:backups:schedule NAME HH:MM --keep N, services:backups NAME
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from appliance import addons, backups
from core.errors import UsageError, ValidationError
from gitserver.commands.base import Context, command, when
from releaser import services
from releaser.services import Service
from scheduler.base import Stdio


def _name(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("name", metavar="NAME")
    return p


def _with(*more: Callable[[argparse.ArgumentParser], object]) -> Callable[[argparse.ArgumentParser], None]:
    """NAME, then the options `more` adds."""

    def build(p: argparse.ArgumentParser) -> None:
        _name(p)
        for add in more:
            add(p)

    return build


def _kind(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("kind", metavar="KIND", help="postgres or redis")
    return p


def _attached(ctx: Context, fn: Callable[[Stdio], int]) -> int:
    if ctx.attach is None:
        raise UsageError("this command needs an SSH session to attach to")
    return ctx.attach(fn)


def _service(ctx: Context, name: str, manage: bool = False) -> Service:
    return services.authorize(ctx.store, ctx.user, services.check_name(name), manage=manage)


@command(
    "services:create",
    "create a backing service: postgres or redis, with generated credentials",
    args=lambda p: _name(_kind(p)),
    examples=["ssh deis services:create postgres mydb", "ssh deis services:create redis cache"],
)
def services_create(ctx: Context, args: argparse.Namespace) -> int:
    services.check_name(args.name)
    addons.create(ctx.platform, services.check_kind(args.kind), args.name, ctx.user.name, ctx.out)
    return 0


@command(
    "services",
    "list the backing services you may use",
    aliases=("services:list",),
    examples=["ssh deis services", "ssh deis services:list --json"],
)
def services_list(ctx: Context, args: argparse.Namespace) -> int:
    found = services.visible(ctx.store, ctx.user)
    e = addons.engine(ctx.platform)
    data = [
        {
            "name": s.name,
            "kind": s.kind,
            "owner": s.owner,
            "status": e.status(s.name).state,
            "links": sorted(s.links),
        }
        for s in found
    ]
    rows = [
        [s.name, s.kind, s.owner, str(d["status"]), ", ".join(sorted(s.links))]
        for s, d in zip(found, data, strict=True)
    ]
    ctx.show(data, ["NAME", "KIND", "OWNER", "STATUS", "LINKED APPS"], rows, title="Services")
    return 0


@command(
    "services:info",
    "a service's kind, version, status, size and linked apps (and its URL, to its owner and admins)",
    args=_name,
    examples=["ssh deis services:info mydb"],
)
def services_info(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    role = services.role(ctx.store, ctx.user, svc)
    data = addons.info(ctx.platform, svc, with_url=role in ("owner", "admin"))
    if ctx.json:
        ctx.show(data, [], [])
        return 0
    ctx.print(f"=== {svc.name} ({svc.kind})")
    status = data["status"] + (f" ({data['health']})" if data["health"] else "")
    lines = {
        "version": data["version"] or "-",
        "status": f"{status}, restarted {data['restarts']} times",
        "owner": svc.owner,
        "created": when(svc.created),
        "size": "-" if data["size"] is None else f"{data['size']} bytes",
        "links": ", ".join(f"{a} ({v})" for a, v in data["links"].items()) or "none",
    }
    if "url" in data:
        lines["url"] = data["url"]
    for key, value in lines.items():
        ctx.print(f"{key + ':':<10} {value}")
    return 0


@command(
    "services:destroy",
    "destroy a service and its data (refused while it is linked)",
    args=_with(lambda p: p.add_argument("--confirm", metavar="NAME", default=None)),
    examples=["ssh deis services:destroy mydb --confirm mydb"],
)
def services_destroy(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name, manage=True)
    if args.confirm != svc.name:
        raise ValidationError(f"this removes {svc.name} and all its data: add --confirm {svc.name}")
    addons.destroy(ctx.platform, svc, ctx.out)
    return 0


@command(
    "services:link",
    "give an app the service's URL (DATABASE_URL, REDIS_URL or --as VAR) and access to it: a new release",
    app=True,
    args=_with(lambda p: p.add_argument("--as", dest="variable", metavar="VAR", default=None)),
    examples=[
        "ssh deis services:link mydb -a myapp",
        "ssh deis services:link other -a myapp --as REPORTS_URL",
    ],
)
def services_link(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name, manage=True)
    app = ctx.app(args)
    with ctx.lock(app.name):
        fresh = _service(ctx, svc.name, manage=True)  # as it is now that we hold the app
        addons.link(ctx.platform, fresh, app.name, args.variable, ctx.user.name, ctx.out)
    return 0


@command(
    "services:unlink",
    "take the service's variable and access away from an app: a new release",
    app=True,
    args=_name,
    examples=["ssh deis services:unlink mydb -a myapp"],
)
def services_unlink(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name, manage=True)
    app = ctx.app(args)
    with ctx.lock(app.name):
        fresh = _service(ctx, svc.name, manage=True)
        addons.unlink(ctx.platform, fresh, app.name, ctx.user.name, ctx.out)
    return 0


@command(
    "services:backup",
    "write a consistent dump to stdout (postgres: pg_dump custom format; redis: RDB)",
    args=_name,
    examples=["ssh deis services:backup mydb > mydb.dump"],
)
def services_backup(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    return _attached(ctx, lambda stdio: addons.backup(ctx.platform, svc, stdio, ctx.closed))


@command(
    "services:restore",
    "replace the service's data with a dump read from stdin (what services:backup wrote)",
    args=_name,
    examples=["ssh deis services:restore mydb < mydb.dump"],
)
def services_restore(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name, manage=True)
    addons.check_running(ctx.platform, svc)
    ctx.out.step(f"Restoring {svc.name} from stdin")
    # While attached, the session's output belongs to the restore: the last line waits for it.
    _attached(ctx, lambda stdio: _restore(ctx, svc, stdio))
    ctx.out.step(f"done, {svc.name} restored")
    return 0


def _restore(ctx: Context, svc: Service, stdio: Stdio) -> int:
    addons.restore(ctx.platform, svc, stdio)
    return 0


@command(
    "services:connect",
    "the service's own client (psql, redis-cli) on this session (ssh -t for a terminal)",
    args=_name,
    examples=["ssh -t deis services:connect mydb", "echo 'select 1' | ssh deis services:connect mydb"],
)
def services_connect(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    return _attached(ctx, lambda stdio: addons.connect(ctx.platform, svc, stdio))


@command(
    "services:restart",
    "restart a service (its data stays)",
    args=_name,
    examples=["ssh deis services:restart mydb"],
)
def services_restart(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    addons.restart(ctx.platform, svc, ctx.out)
    return 0


@command(
    "services:logs",
    "a service's output (-f to follow)",
    args=_with(
        lambda p: p.add_argument("-f", "--follow", action="store_true"),
        lambda p: p.add_argument("-n", "--lines", type=int, default=100, metavar="N"),
    ),
    examples=["ssh deis services:logs mydb -f"],
)
def services_logs(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    if args.lines < 0:
        raise ValidationError("-n takes a number of lines, 0 or more")
    return _attached(
        ctx, lambda stdio: addons.logs(ctx.platform, svc, stdio, args.follow, args.lines, ctx.closed)
    )


@command(
    "services:backups:schedule",
    "keep daily backups (at HH:MM UTC) of a service under the state dir, the last N",
    args=_with(
        lambda p: p.add_argument("daily", metavar="HH:MM"),
        lambda p: p.add_argument("--keep", type=int, required=True, metavar="N"),
    ),
    examples=["ssh deis services:backups:schedule mydb 03:30 --keep 7"],
)
def services_schedule(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name, manage=True)
    services.set_schedule(ctx.store, svc.name, args.daily, args.keep)
    ctx.out.step(f"{svc.name} is backed up daily at {args.daily} UTC; the last {args.keep} are kept")
    return 0


@command(
    "services:backups",
    "list a service's kept backups",
    args=_name,
    examples=["ssh deis services:backups mydb"],
)
def services_backups(ctx: Context, args: argparse.Namespace) -> int:
    svc = _service(ctx, args.name)
    found = backups.listing(ctx.platform, svc)
    rows = [[when(b.created), b.file, str(b.size)] for b in found]
    data = [{"created": b.created, "file": b.file, "size": b.size} for b in found]
    ctx.show(data, ["CREATED", "FILE", "SIZE"], rows, title=f"{svc.name} Backups")
    return 0
