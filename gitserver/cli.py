"""The SSH command line: shell-like splitting, the command table, app resolution, dispatch.

The ssh client joins its arguments with spaces, so `ssh deis config:set 'A=two words'` arrives as
one string: it is split here with POSIX shell quoting rules (and nothing else: no `$` expansion,
no globbing). Each command is `namespace:verb [--app APP] args`.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from core.errors import NotFound, UsageError


def split(command_line: str) -> list[str]:
    try:
        return shlex.split(command_line, posix=True)
    except ValueError as exc:
        raise UsageError(f"cannot parse the command line: {exc} (check your quotes)") from exc


class ArgParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(
            f"{self.prog}: {message} (usage: {self.format_usage().strip().removeprefix('usage: ')})"
        )

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"{self.prog}: bad arguments")

    def print_help(self, file: Any = None) -> None:
        raise UsageError(f"try: help {self.prog}")


@dataclass
class Command:
    name: str
    summary: str
    func: Callable[..., int | None]
    configure: Callable[[ArgParser], object] | None = None
    app: bool = False  # acts on one app (resolved from --app, a first argument, or the only app)
    stdin: bool = False  # reads its input from stdin
    aliases: tuple[str, ...] = ()
    examples: list[str] = field(default_factory=list)

    def parser(self) -> ArgParser:
        p = ArgParser(prog=self.name, add_help=False, allow_abbrev=False)
        if self.app:
            p.add_argument("-a", "--app")
        if self.configure:
            self.configure(p)
        return p


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.aliases: dict[str, str] = {}

    def command(
        self,
        name: str,
        summary: str,
        *,
        args: Callable[[ArgParser], object] | None = None,
        app: bool = False,
        stdin: bool = False,
        aliases: tuple[str, ...] = (),
        examples: list[str] | None = None,
    ) -> Callable[[Callable[..., int | None]], Callable[..., int | None]]:
        def register(func: Callable[..., int | None]) -> Callable[..., int | None]:
            cmd = Command(name, summary, func, args, app, stdin, aliases, examples or [])
            self.commands[name] = cmd
            for alias in aliases:
                self.aliases[alias] = name
            return func

        return register

    def lookup(self, name: str) -> Command:
        key = self.aliases.get(name, name)
        if key in self.commands:
            return self.commands[key]
        names = list(self.commands) + list(self.aliases)
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else "; see 'help'"
        raise NotFound(f"unknown command {name!r}{hint}")

    def parse(self, argv: list[str]) -> tuple[Command, argparse.Namespace]:
        if not argv:
            return self.lookup("help"), argparse.Namespace(command=None)
        cmd = self.lookup(argv[0])
        return cmd, cmd.parser().parse_args(argv[1:])


def extract_json_flag(argv: list[str]) -> tuple[list[str], bool]:
    """`--json` works on every command, anywhere after the command name and before a `--`."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--json" in argv[1:end]:
        return [a for i, a in enumerate(argv) if not (0 < i < end and a == "--json")], True
    return argv, False
