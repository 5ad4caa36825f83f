"""perms:list, perms:create, perms:delete (collaborators and admins) and users:list.

As in Deis v1: an app's owner and its collaborators act on it, but only the owner or an admin
adds or removes collaborators (or destroys it); admins act on every app. `--admin` grants or
revokes platform admin, which only an admin may do; the last admin cannot be revoked (the
platform would be left with nobody to manage it but the host's `deis` command).
"""

from __future__ import annotations

import argparse

from core.errors import Conflict, NotFound, PermissionDenied
from core.names import check_user
from gitserver.commands.base import Context, command
from releaser import apps, events


def _require_admin(ctx: Context, action: str) -> None:
    if not ctx.user.admin:
        raise PermissionDenied(f"only an admin may {action}")


def _existing_user(ctx: Context, name: str) -> apps.User:
    user = apps.get_user(ctx.store, check_user(name))
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


def _admin_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin", action="store_true")


@command(
    "perms:list",
    "list who may act on an app (owner and collaborators); --admin: list platform admins",
    app=True,
    args=_admin_flag,
    aliases=("perms",),
    examples=["ssh deis perms:list --app myapp", "ssh deis perms:list --admin"],
)
def perms_list(ctx: Context, args: argparse.Namespace) -> int:
    if args.admin:
        _require_admin(ctx, "list admins")
        admins = [u.name for u in apps.list_users(ctx.store) if u.admin]
        ctx.show({"admins": admins}, ["ADMIN"], [[n] for n in admins], title="Administrators")
        return 0
    app = ctx.app(args)
    collaborators = apps.collaborators(ctx.store, app.name)
    rows = [[app.owner, "owner"]] + [[n, "collaborator"] for n in collaborators]
    ctx.show(
        {"app": app.name, "owner": app.owner, "collaborators": collaborators},
        ["USER", "ROLE"],
        rows,
        title=f"{app.name}'s Users",
    )
    return 0


def _perm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("user", metavar="USER")
    _admin_flag(p)


@command(
    "perms:create",
    "let USER act on an app (owner or admin); --admin: make USER a platform admin (admins only)",
    app=True,
    args=_perm_args,
    examples=["ssh deis perms:create bob --app myapp", "ssh deis perms:create carol --admin"],
)
def perms_create(ctx: Context, args: argparse.Namespace) -> int:
    if args.admin:
        _require_admin(ctx, "grant admin")
        user = _existing_user(ctx, args.user)
        if user.admin:
            raise Conflict(f"{user.name} is already an admin")
        apps.set_admin(ctx.store, user.name, True)
        ctx.out.step(f"{user.name} is now a platform admin")
        return 0
    app = ctx.app(args)
    apps.require_manager(ctx.store, ctx.user, app, "add collaborators")
    user = _existing_user(ctx, args.user)
    if user.name == app.owner:
        raise Conflict(f"{user.name} owns {app.name} already")
    apps.add_collaborator(ctx.store, app.name, user.name)
    events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} added collaborator {user.name}")
    ctx.out.step(f"{user.name} may now act on {app.name}")
    return 0


@command(
    "perms:delete",
    "take away USER's access to an app (owner or admin); --admin: revoke platform admin (admins only)",
    app=True,
    args=_perm_args,
    examples=["ssh deis perms:delete bob --app myapp", "ssh deis perms:delete carol --admin"],
)
def perms_delete(ctx: Context, args: argparse.Namespace) -> int:
    if args.admin:
        _require_admin(ctx, "revoke admin")
        user = _existing_user(ctx, args.user)
        if not user.admin:
            raise NotFound(f"{user.name} is not an admin")
        apps.revoke_admin_not_last(ctx.store, user.name, by=ctx.user.name)
        ctx.out.step(f"{user.name} is no longer a platform admin")
        return 0
    app = ctx.app(args)
    apps.require_manager(ctx.store, ctx.user, app, "remove collaborators")
    apps.remove_collaborator(ctx.store, app.name, check_user(args.user))
    events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} removed collaborator {args.user}")
    ctx.out.step(f"{args.user} may no longer act on {app.name}")
    return 0


@command(
    "users:list",
    "list the platform's users (admins only)",
    aliases=("users",),
    examples=["ssh deis users:list"],
)
def users_list(ctx: Context, args: argparse.Namespace) -> int:
    _require_admin(ctx, "list users")
    keys: dict[str, int] = {}
    for k in apps.list_keys(ctx.store):
        keys[k["user"]] = keys.get(k["user"], 0) + 1
    users = apps.list_users(ctx.store)
    ctx.show(
        [{"name": u.name, "admin": u.admin, "keys": keys.get(u.name, 0)} for u in users],
        ["USER", "ADMIN", "KEYS"],
        [[u.name, "yes" if u.admin else "", str(keys.get(u.name, 0))] for u in users],
        title="Users",
    )
    return 0
