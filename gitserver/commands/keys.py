"""keys:add, keys:list, keys:remove: a user's SSH public keys (the only way to log in).

Everyone manages their own keys; an admin may act for another user (`--user NAME`, which also
creates that user) and list everyone's (`--all`). Removing your own last key is refused: with no
key left you could never log in again to add one, and only the host's `deis keys:add` could help.
Removing the key of the current session is allowed when another key remains (the session goes on).
"""

from __future__ import annotations

import argparse

from core.errors import Conflict, PermissionDenied, UsageError
from core.names import check_user
from gitserver.commands.base import Context, command
from releaser import apps


def _target_user(ctx: Context, name: str | None) -> str:
    if name is None or name == ctx.user.name:
        return ctx.user.name
    if not ctx.user.admin:
        raise PermissionDenied("only an admin may manage another user's keys")
    return check_user(name)


@command(
    "keys:add",
    "add an SSH public key (read from stdin) to your account; admins: --user NAME for someone else",
    args=lambda p: p.add_argument("--user", metavar="NAME"),
    stdin=True,
    examples=["ssh deis keys:add < ~/.ssh/id_ed25519.pub", "ssh deis keys:add --user bob < bob.pub"],
)
def keys_add(ctx: Context, args: argparse.Namespace) -> int:
    user = _target_user(ctx, args.user)
    text = ctx.stdin.decode("utf-8", "replace").strip()
    if not text:
        raise UsageError(
            "keys:add reads the public key from stdin: ssh deis keys:add < ~/.ssh/id_ed25519.pub"
        )
    fp = apps.fingerprint(text)  # validates before anything is written
    try:
        apps.add_key(ctx.store, user, text)
    except Conflict:
        # Whose key it is stays private to admins.
        owner = apps.user_for_key(ctx.store, fp)
        raise Conflict(
            f"key {fp} is already registered" + (f" to {owner}" if ctx.user.admin or owner == user else "")
        ) from None
    # The user is made after its key is in: a refused key must not leave a user behind.
    if apps.get_user(ctx.store, user) is None:
        apps.ensure_user(ctx.store, user)
        ctx.out.step(f"created user {user}")
    ctx.out.step(f"key {fp} added for {user}")
    return 0


@command(
    "keys:list",
    "list your SSH keys; admins: --all for everyone's",
    args=lambda p: p.add_argument("--all", action="store_true"),
    aliases=("keys",),
    examples=["ssh deis keys:list"],
)
def keys_list(ctx: Context, args: argparse.Namespace) -> int:
    if args.all and not ctx.user.admin:
        raise PermissionDenied("only an admin may list every user's keys")
    keys = apps.list_keys(ctx.store, None if args.all else ctx.user.name)
    ctx.show(
        keys,
        ["USER", "NAME", "FINGERPRINT"],
        [[k["user"], k["name"], k["fingerprint"]] for k in keys],
        title="SSH keys" if args.all else f"{ctx.user.name} Keys",
    )
    return 0


@command(
    "keys:remove",
    "remove one of your SSH keys by name or fingerprint; admins: --user NAME",
    args=lambda p: (
        p.add_argument("key", metavar="NAME|FINGERPRINT"),
        p.add_argument("--user", metavar="NAME"),
    ),
    examples=["ssh deis keys:remove laptop", "ssh deis keys:remove SHA256:abc..."],
)
def keys_remove(ctx: Context, args: argparse.Namespace) -> int:
    user = _target_user(ctx, args.user)
    if user == ctx.user.name:
        fp = apps.remove_key_not_last(ctx.store, user, args.key, by=ctx.user.name)
    else:
        fp = apps.remove_key(ctx.store, user, apps.find_key(ctx.store, user, args.key)["fingerprint"])
    ctx.out.step(f"key {fp} removed from {user}")
    return 0
