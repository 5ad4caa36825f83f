"""Argument parsing and rendering of ps, scale, ps:restart, logs and run (pure parts)."""

from __future__ import annotations

import pytest

from core.errors import UsageError, ValidationError
from gitserver import commands
from gitserver.commands.logs import Entry, merge, render
from gitserver.commands.ps import parse_scale, parse_target, uptime
from gitserver.commands.run import command_of


def test_parse_scale() -> None:
    assert parse_scale(["web=3", "worker=0"]) == {"web": 3, "worker": 0}
    for bad in ("web", "web=", "web=-1", "web=two", "=3"):
        with pytest.raises((UsageError, ValidationError)):
            parse_scale([bad])


def test_parse_target() -> None:
    assert parse_target(None) == (None, None)
    assert parse_target("web") == ("web", None)
    assert parse_target("web.2") == ("web", 2)
    with pytest.raises(UsageError):
        parse_target("web.x")


def test_uptime() -> None:
    start = 1e9 + 0.5
    assert uptime(start, 1e9 + 9.9) == "9s"
    assert uptime(start, 1e9 + 252.5) == "4m12s"
    assert uptime(start, 1e9 + 7500.5) == "2h5m"
    assert uptime(start, 1e9 + 3 * 86400 + 4 * 3600 + 1) == "3d4h"
    assert uptime(0.0, 100) == ""  # never started


def test_logs_merge_by_time_and_keep_the_last_lines() -> None:
    entries = [Entry(3, "web.1", "c"), Entry(1, "deis", "a"), Entry(2, "web.2", "b"), Entry(3, "web.2", "d")]
    assert [e.text for e in merge(entries, None)] == ["a", "b", "c", "d"]  # stable for equal times
    assert [e.text for e in merge(entries, 2)] == ["c", "d"]
    assert render("app", Entry(1, "web.1", "GET /")) == "app[web.1]: GET /"


def test_run_command() -> None:
    assert command_of(["--", "sh", "-c", "exit 7"]) == ["sh", "-c", "exit 7"]
    assert command_of(["env"]) == ["env"]
    with pytest.raises(UsageError):
        command_of(["--"])


def test_commands_are_registered_with_examples() -> None:
    parse = commands.registry.parse
    cmd, args = parse(["run", "--app", "x", "--", "ls", "-la"])
    assert cmd.name == "run" and args.app == "x" and command_of(args.command) == ["ls", "-la"]
    cmd, args = parse(["scale", "web=2"])
    assert cmd.name == "ps:scale" and args.assignments == ["web=2"]
    cmd, args = parse(["logs", "-n", "5", "-f", "--type", "web"])
    assert (args.lines, args.follow, args.ptype) == (5, True, "web")
    with pytest.raises(UsageError):
        parse(["logs", "-n", "0"])
    for name in ("ps", "ps:scale", "ps:restart", "logs", "run"):
        assert commands.registry.commands[name].examples
