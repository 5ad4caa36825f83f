"""builds, builds:create: the app's builds, and deploying an image already in the platform registry."""

from __future__ import annotations

import argparse
from typing import Any

from appliance import operations
from builders import image, source
from core.errors import PermissionDenied, ValidationError
from gitserver.commands.base import Context, command, when
from releaser import apps, releases


def _builds_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--procfile",
        action="append",
        default=[],
        metavar="'TYPE: COMMAND'",
        help="a process type and its command (repeatable); without one the image's own CMD runs as cmd",
    )


@command(
    "builds",
    "list an app's builds, newest first",
    app=True,
    aliases=("builds:list",),
    examples=["ssh deis builds --app myapp --json"],
)
def builds_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    data: list[dict[str, Any]] = []
    seen: dict[tuple[str, float], dict[str, Any]] = {}
    # Releases newest first; a build reused by later releases is listed once, at its first release.
    for r in releases.list_releases(ctx.store, app.name):
        b = r.build
        if b is None:
            continue
        key = (b.image, b.created)
        if key not in seen:
            seen[key] = {
                "image": b.image,
                "kind": b.kind,
                "sha": b.sha,
                "procfile": b.procfile,
                "port": b.port,
                "by": b.by,
                "created": when(b.created),
            }
            data.append(seen[key])
        seen[key]["release"] = f"v{r.version}"
    rows = [[d["release"], d["image"], d["kind"], d["by"], d["created"]] for d in data]
    ctx.show(data, ["RELEASE", "IMAGE", "KIND", "BY", "CREATED"], rows, title=f"{app.name} Builds")
    return 0


@command(
    "builds:create",
    "deploy an image that is already in the platform registry",
    app=True,
    args=_builds_args,
    examples=[
        "ssh deis builds:create 127.0.0.1:5000/tools:1.2 --app myapp",
        "ssh deis builds:create 127.0.0.1:5000/tools:1.2 --app myapp --procfile \"'web: ./serve'\"",
    ],
)
def builds_create(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    if any("\n" in p for p in args.procfile):
        raise ValidationError("give each process type as its own --procfile 'TYPE: COMMAND'")
    procfile = source.parse_procfile("\n".join(args.procfile))
    repository = image.parse_reference(ctx.settings, args.image).repository
    owner_app = apps.get_app(ctx.store, repository)
    if owner_app is not None:
        # Another app's build images are that app's code (and maybe secrets): its people only.
        apps.authorize(ctx.store, ctx.user, owner_app.name)
    if apps.retired_images(ctx.store, repository):
        # A destroyed app's images: the people of the apps that still run them only (none: nobody).
        running = operations.runners_of_retired(ctx.platform, repository)
        runners = [apps.require_app(ctx.store, a) for a in running]
        if not any(apps.can_access(ctx.store, ctx.user, a) for a in runners):
            raise PermissionDenied(
                f"image {args.image} is of the destroyed app {repository}: only the people of the apps"
                " that run it may deploy it"
            )
    with ctx.lock(app.name):
        build = image.import_image(ctx.settings, args.image, procfile, ctx.user.name, ctx.out)
        ctx.new_release(
            app.name, f"{ctx.user.name} deployed {build.image}", build=build
        )  # records the platform event
    return 0
