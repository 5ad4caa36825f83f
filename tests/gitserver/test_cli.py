import pytest

from core.errors import NotFound, UsageError
from gitserver.cli import extract_json_flag, split
from gitserver.commands import registry


def test_split_uses_shell_quoting_without_expansion() -> None:
    assert split("config:set 'A=two words' B=\"x y\" C=$(id)") == [
        "config:set",
        "A=two words",
        "B=x y",
        "C=$(id)",
    ]
    assert split("git-receive-pack 'hello.git'") == ["git-receive-pack", "hello.git"]


def test_unbalanced_quotes_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="check your quotes"):
        split("config:set 'A=b")


def test_json_flag_anywhere_but_after_double_dash() -> None:
    assert extract_json_flag(["apps:list", "--json"]) == (["apps:list"], True)
    assert extract_json_flag(["run", "--", "echo", "--json"]) == (["run", "--", "echo", "--json"], False)
    assert extract_json_flag(["config"]) == (["config"], False)


def test_unknown_command_suggests_the_closest() -> None:
    with pytest.raises(NotFound, match="did you mean apps:list"):
        registry.lookup("apps:lst")
    with pytest.raises(NotFound, match="see 'help'"):
        registry.lookup("zzzzzz")


def test_aliases_and_arguments() -> None:
    cmd, args = registry.parse(["apps"])
    assert cmd.name == "apps:list"
    cmd, args = registry.parse(["config:set", "-a", "web", "A=1", "B=x=y"])
    assert (cmd.name, args.app, args.assignments) == ("config:set", "web", ["A=1", "B=x=y"])
    with pytest.raises(UsageError, match="config:set"):
        registry.parse(["config:set"])
    with pytest.raises(UsageError):
        registry.parse(["apps:list", "--bogus"])


def test_no_arguments_means_help() -> None:
    cmd, _ = registry.parse([])
    assert cmd.name == "help"
