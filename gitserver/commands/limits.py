"""limits, limits:set, limits:unset: per process type memory and cpu shares, kept in the release.

Each change is a new release, rolled out like a push; the scheduler gives the containers the limits
(docker `--memory`, `--cpu-shares`). A type without a memory limit of its own gets the platform's
default (`DEIS_DEFAULT_MEMORY`). A rollback restores the limits of the release it goes back to.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from core.errors import NotFound, UsageError, ValidationError
from core.names import check_process_type
from gitserver.commands.base import Context, command
from releaser import releases

_MEMORY = re.compile(r"([0-9]+)([bkmg])", re.IGNORECASE)
_UNIT = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 6 << 20  # docker refuses less
MIN_SHARES, MAX_SHARES = 2, 262144  # docker's bounds for --cpu-shares


def parse_memory(ptype: str, text: str) -> str:
    """`512M`, `1g`, `1024k` -> docker's lowercase form (`512m`); refuses what docker would refuse."""
    m = _MEMORY.fullmatch(text)
    if not m:
        raise ValidationError(
            f"invalid memory limit {text!r} for {ptype}: use a number and a unit, like 512M or 1G"
        )
    if int(m[1]) * _UNIT[m[2].lower()] < MIN_MEMORY:
        raise ValidationError(f"memory limit {text!r} for {ptype} is below docker's minimum of 6M")
    return f"{int(m[1])}{m[2].lower()}"


def parse_cpu(ptype: str, text: str) -> int:
    if not text.isdigit() or not MIN_SHARES <= int(text) <= MAX_SHARES:
        raise ValidationError(
            f"invalid cpu shares {text!r} for {ptype}: use a whole number from {MIN_SHARES} to {MAX_SHARES}"
            " (a relative weight; docker's default is 1024)"
        )
    return int(text)


def set_limits(limits: dict[str, dict[str, Any]], kind: str, items: list[str]) -> dict[str, dict[str, Any]]:
    """`limits` after setting `TYPE=VALUE` items of `kind` ("memory" or "cpu")."""
    new = {k: dict(v) for k, v in limits.items()}
    for item in items:
        ptype, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected TYPE=VALUE, got {item!r}")
        check_process_type(ptype)
        new.setdefault(kind, {})[ptype] = (
            parse_cpu(ptype, value) if kind == "cpu" else parse_memory(ptype, value)
        )
    return new


def unset_limits(limits: dict[str, dict[str, Any]], kind: str, types: list[str]) -> dict[str, dict[str, Any]]:
    new = {k: dict(v) for k, v in limits.items()}
    for ptype in types:
        check_process_type(ptype)
        if ptype not in new.get(kind, {}):
            raise NotFound(f"no {kind} limit is set for {ptype}")
        del new[kind][ptype]
    return {k: v for k, v in new.items() if v}


def _kind(args: argparse.Namespace) -> str:
    return "cpu" if args.cpu else "memory"


@command(
    "limits",
    "show an app's memory and cpu limits",
    app=True,
    aliases=("limits:list",),
    examples=["ssh deis limits --app myapp"],
)
def limits_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    current = releases.latest(ctx.store, app.name)
    limits = current.limits if current else {}
    rows = [
        [kind, t, str(v)] for kind in ("memory", "cpu") for t, v in sorted((limits.get(kind) or {}).items())
    ]
    default = f"{ctx.settings.default_memory >> 20}m" if ctx.settings.default_memory else "unlimited"
    rows.append(["memory", "(others)", f"{default} (the platform's default)"])
    ctx.show(limits, ["KIND", "TYPE", "LIMIT"], rows, title=f"{app.name} Limits")
    return 0


def _set_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", action="store_true", help="set cpu shares instead of memory")
    p.add_argument("items", nargs="+", metavar="TYPE=VALUE")


def _unset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", action="store_true", help="unset cpu shares instead of memory")
    p.add_argument("types", nargs="+", metavar="TYPE")


@command(
    "limits:set",
    "limit memory (512M, 1G) or --cpu shares (relative weight, default 1024) per type: a new release",
    app=True,
    args=_set_args,
    examples=[
        "ssh deis limits:set web=512M worker=1G --app myapp",
        "ssh deis limits:set --cpu web=512 --app myapp",
    ],
)
def limits_set(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    kind = _kind(args)
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        limits = set_limits(current.limits if current else {}, kind, args.items)
        ctx.new_release(app.name, f"{ctx.user.name} limited {kind} of {', '.join(args.items)}", limits=limits)
    return 0


@command(
    "limits:unset",
    "remove memory (or, with --cpu, cpu) limits of process types: a new release",
    app=True,
    args=_unset_args,
    examples=["ssh deis limits:unset web --app myapp", "ssh deis limits:unset --cpu web --app myapp"],
)
def limits_unset(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    kind = _kind(args)
    with ctx.lock(app.name):
        current = releases.latest(ctx.store, app.name)
        limits = unset_limits(current.limits if current else {}, kind, args.types)
        ctx.new_release(
            app.name, f"{ctx.user.name} removed the {kind} limit of {', '.join(args.types)}", limits=limits
        )
    return 0
