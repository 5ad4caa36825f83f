"""run: a one-off container of the running release, with its config, attached to the session.

It is named APP_vN.run.K. Its exit status is the session's; its output is the session's output,
untouched (nothing else is printed, so `ssh deis run -- cat data > file` works). Under `ssh -t` it
gets a pty of the client's size, resized with the client's terminal. It is removed when the session
ends, also when the client hangs up.
"""

from __future__ import annotations

import argparse

from appliance import operations
from core.errors import UsageError
from gitserver.commands.base import Context, command


def _args(p: argparse.ArgumentParser) -> None:
    p.usage = "%(prog)s [-a APP] [--] CMD [ARG...]   (options of run before CMD)"
    p.add_argument("command", nargs=argparse.REMAINDER)


def command_of(words: list[str]) -> list[str]:
    """The container's argv: what follows `run` (and its options), a leading `--` dropped."""
    cmd = words[1:] if words[:1] == ["--"] else list(words)
    if not cmd:
        raise UsageError("run what? for example: ssh deis run -- ls -la")
    return cmd


@command(
    "run",
    "run a one-off command in a new container of the current release (ssh -t for a terminal)",
    app=True,
    args=_args,
    examples=["ssh deis run --app myapp -- python3 manage.py migrate", "ssh -t deis run -- bash"],
)
def run(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    cmd = command_of(args.command)
    if ctx.attach is None:
        raise UsageError("run needs an SSH session to attach to")
    spec = operations.one_off(ctx.platform, app.name, cmd)
    return ctx.attach(lambda stdio: operations.run(ctx.platform, spec, stdio, ctx.closed))
