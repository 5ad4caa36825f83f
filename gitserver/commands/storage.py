"""storage:mount, storage:list, storage:unmount: an app's volumes (appliance.storage).

A volume is a directory kept under the state dir, bound at a path into the app's containers (all
types, or those named with --type); mounting and unmounting each cut a release rolled out with zero
downtime. Its data survives redeploys, restarts and `deis down/up`; apps:destroy removes it.
"""

from __future__ import annotations

import argparse

from appliance import storage as app_storage
from gitserver.commands.base import Context, command
from releaser import storage


def _mount_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", metavar="NAME:/path")
    p.add_argument("--type", action="append", dest="types", metavar="TYPE", help="only this process type")


@command(
    "storage:mount",
    "mount a named volume of the app at a path in its containers: a new release",
    app=True,
    args=_mount_args,
    examples=["ssh deis storage:mount -a myapp uploads:/app/uploads --type web"],
)
def storage_mount(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    volume = storage.parse(args.volume, args.types)
    with ctx.lock(app.name):
        app_storage.mount(ctx.platform, app.name, volume, ctx.user.name, ctx.out)
    return 0


@command(
    "storage:list",
    "list the app's volumes",
    app=True,
    aliases=("storage",),
    examples=["ssh deis storage:list -a myapp"],
)
def storage_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    vols = storage.list_volumes(ctx.store, app.name)
    data = [{"name": v.name, "path": v.path, "types": list(v.types)} for v in vols]
    rows = [[v.name, v.path, ", ".join(v.types) or "all"] for v in vols]
    ctx.show(data, ["NAME", "PATH", "TYPES"], rows, title=f"{app.name} Volumes")
    return 0


@command(
    "storage:unmount",
    "take a volume out of the app's containers (its data is kept): a new release",
    app=True,
    args=lambda p: p.add_argument("name", metavar="NAME"),
    examples=["ssh deis storage:unmount -a myapp uploads"],
)
def storage_unmount(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    with ctx.lock(app.name):
        app_storage.unmount(ctx.platform, app.name, args.name, ctx.user.name, ctx.out)
    return 0
