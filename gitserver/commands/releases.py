"""releases, releases:info, releases:rollback: the app's numbered history, and going back in it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import ValidationError
from core.records import Release
from gitserver.commands.base import Context, command, when
from releaser import releases


def release_data(r: Release, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": r.version,
        "by": r.by,
        "created": when(r.created),
        "summary": r.summary,
        "image": r.build.image if r.build else None,
    }
    if full:
        data["build"] = r.to_json()["build"]
        data["config"] = r.config
        data["limits"] = r.limits
        data["tags"] = r.tags
    return data


@command(
    "releases",
    "list an app's releases, newest first",
    app=True,
    aliases=("releases:list",),
    examples=["ssh deis releases --app myapp", "ssh deis releases --json"],
)
def releases_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    data = [release_data(r) for r in releases.list_releases(ctx.store, app.name)]
    rows = [[f"v{d['version']}", d["by"], d["created"], d["summary"]] for d in data]
    ctx.show(data, ["VERSION", "BY", "CREATED", "SUMMARY"], rows, title=f"{app.name} Releases")
    return 0


@command(
    "releases:info",
    "show one release: build, config, limits, tags",
    app=True,
    args=lambda p: p.add_argument("version", metavar="vN"),
    examples=["ssh deis releases:info v3 --app myapp"],
)
def releases_info(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    r = releases.get_release(ctx.store, app.name, releases.parse_version(args.version))
    data = release_data(r, full=True)
    rows = [[k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)] for k, v in data.items()]
    ctx.show(data, ["FIELD", "VALUE"], rows, title=f"{app.name} Release v{r.version}")
    return 0


@command(
    "releases:rollback",
    "roll back (default: to the release before the current): a new release with that build and config",
    app=True,
    args=lambda p: p.add_argument("version", nargs="?", metavar="vN"),
    examples=["ssh deis releases:rollback --app myapp", "ssh deis releases:rollback v3 --app myapp"],
    aliases=("rollback",),
)
def releases_rollback(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    wanted = releases.parse_version(args.version) if args.version else None
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        if wanted is None:
            if current is None or current.version < 2:
                raise ValidationError(f"{app.name} has no release before the current one to roll back to")
            wanted = current.version - 1
        target = releases.get_release(ctx.store, app.name, wanted)
        if target.build is None:
            raise ValidationError(
                f"v{target.version} of {app.name} has no build (it predates the first push): "
                "nothing to roll back to"
            )
        latest = releases.latest(ctx.store, app.name)
        next_version = (latest.version if latest else 0) + 1  # under the lock: what prepare will number it
        ctx.out.step(f"Rolling back {app.name} to v{target.version} as v{next_version}")
        ctx.new_release(
            app.name,
            f"{ctx.user.name} rolled back to v{target.version}",
            build=target.build,
            config=dict(target.config),
            limits=dict(target.limits),
            tags=dict(target.tags),
        )
    return 0
