"""tags, tags:set, tags:unset: KEY=VALUE labels of where an app's containers may run (Deis v1).

Tags are kept in the release (a change is a new release, and a rollback restores them). The swarm
scheduler places an app's instances only on nodes whose labels match every tag (`docker node update
--label-add KEY=VALUE NODE`); the single-host docker scheduler has one place and ignores them.
"""

from __future__ import annotations

import argparse
import re

from core.errors import NotFound, UsageError, ValidationError
from gitserver.commands.base import Context, command
from releaser import releases

_TAG_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,63}")
_TAGS_NOTE = "swarm: nodes labelled KEY=VALUE; the single-host docker scheduler ignores them"


def apply_tags(tags: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    new = dict(tags)
    for key, value in changes.items():
        if not _TAG_KEY.fullmatch(key):
            raise ValidationError(f"invalid tag key {key!r}: use lowercase letters, digits, '_' and '-'")
        if value is None:
            if key not in new:
                raise NotFound(f"tag {key} is not set")
            del new[key]
        elif not _TAG_VALUE.fullmatch(value):
            raise ValidationError(
                f"invalid tag value {value!r} for {key}: use letters, digits, '.', ':', '_', '-'"
            )
        else:
            new[key] = value
    return new


@command(
    "tags",
    "show an app's tags (where its containers may run)",
    app=True,
    aliases=("tags:list",),
    examples=["ssh deis tags --app myapp"],
)
def tags_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    current = releases.latest(ctx.store, app.name)
    tags = current.tags if current else {}
    ctx.show(tags, ["TAG", "VALUE"], [[k, v] for k, v in sorted(tags.items())], title=f"{app.name} Tags")
    return 0


@command(
    "tags:set",
    f"set tags KEY=VALUE: a new release ({_TAGS_NOTE})",
    app=True,
    args=lambda p: p.add_argument("items", nargs="+", metavar="KEY=VALUE"),
    examples=["ssh deis tags:set environ=prod --app myapp"],
)
def tags_set(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes: dict[str, str | None] = {}
    for item in args.items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        changes[key] = value
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        tags = apply_tags(current.tags if current else {}, changes)
        ctx.new_release(app.name, f"{ctx.user.name} tagged {', '.join(args.items)}", tags=tags)
    return 0


@command(
    "tags:unset",
    f"remove tags: a new release ({_TAGS_NOTE})",
    app=True,
    args=lambda p: p.add_argument("keys", nargs="+", metavar="KEY"),
    examples=["ssh deis tags:unset environ --app myapp"],
)
def tags_unset(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        tags = apply_tags(current.tags if current else {}, dict.fromkeys(args.keys))
        ctx.new_release(app.name, f"{ctx.user.name} removed tags {', '.join(args.keys)}", tags=tags)
    return 0
