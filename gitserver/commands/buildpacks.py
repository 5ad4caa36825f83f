"""builds:purge-cache, buildpacks: the buildpack side of builds (see builders.buildpack)."""

from __future__ import annotations

import argparse

import builders
from builders import buildpack
from gitserver.commands.base import Context, command
from releaser import events


@command(
    "builds:purge-cache",
    "empty the app's build cache (buildpack cache, Dockerfile cache mounts): the next push starts afresh",
    app=True,
    examples=["ssh deis builds:purge-cache --app myapp"],
)
def purge_cache(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    with ctx.lock(app.name):  # never under a running build's feet
        size = builders.purge_cache(ctx.settings, app.name)
    events.record(ctx.store, app.name, ctx.user.name, "purged the build cache")
    ctx.out.step(f"Build cache of {app.name} purged ({buildpack.human_size(size)} freed)")
    return 0


@command(
    "buildpacks",
    "list the built-in buildpacks, in the order they are tried",
    examples=["ssh deis buildpacks", "ssh deis config:set BUILDPACK_URL=https://git.example.com/bp.git#v2"],
)
def buildpacks_list(ctx: Context, args: argparse.Namespace) -> int:
    data = [{"name": name, "order": i + 1} for i, name in enumerate(buildpack.BUILTIN_ORDER)]
    ctx.show(data, ["ORDER", "NAME"], [[str(d["order"]), str(d["name"])] for d in data], title="Buildpacks")
    return 0
