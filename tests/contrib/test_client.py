"""contrib/deis, the client helper: its pure parts (the end-to-end run is in tests/e2e/test_people.py)."""

import importlib.machinery
import importlib.util
import shlex
from types import ModuleType

import pytest

from gitserver.cli import split
from tests.harness import ROOT


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("deis_client", str(ROOT / "contrib" / "deis"))
    spec = importlib.util.spec_from_loader("deis_client", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


deis = load()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://git@deis.example.com:2222/web.git", ("git", "deis.example.com", 2222, "web")),
        ("ssh://git@127.0.0.1:40001/my-app.git", ("git", "127.0.0.1", 40001, "my-app")),
        ("ssh://git@host/web.git", ("git", "host", 22, "web")),
        ("ssh://git@[::1]:2222/web.git", ("git", "::1", 2222, "web")),
        ("git@host:web.git", ("git", "host", 22, "web")),
    ],
)
def test_parse_remote(url: str, expected: tuple[str, str, int, str]) -> None:
    assert deis.parse_remote(url) == expected


@pytest.mark.parametrize(
    "url", ["https://github.com/x/y.git", "ssh://git@host:22/Not_An_App.git", "/tmp/repo"]
)
def test_parse_remote_refuses_what_is_not_an_app_remote(url: str) -> None:
    with pytest.raises(ValueError):
        deis.parse_remote(url)


def test_build_argv_adds_the_app_and_quotes_each_argument() -> None:
    value = "GREETING=hello 'world' $(id) \"x\""
    argv = deis.build_argv(["ssh"], "ssh://git@h:2222/web.git", "config:set", [value, "B=1"], tty=False)
    assert argv == ["ssh", "-p", "2222", "git@h", shlex.join(["config:set", "--app", "web", value, "B=1"])]
    # What the server's parser makes of it is exactly what was typed.
    assert split(argv[-1]) == ["config:set", "--app", "web", value, "B=1"]


def test_build_argv_leaves_app_less_commands_and_explicit_apps_alone() -> None:
    url = "ssh://git@h:2222/web.git"
    assert deis.build_argv(["ssh"], url, "apps:list", [], tty=False)[-1] == "apps:list"
    assert deis.build_argv(["ssh"], url, "keys:add", [], tty=False)[-1] == "keys:add"
    assert deis.build_argv(["ssh"], url, "config", ["-a", "api"], tty=False)[-1] == "config -a api"
    assert deis.build_argv(["ssh"], url, "config", ["--app=api"], tty=False)[-1] == "config --app=api"
    # After `--`, -a belongs to the command being run, not to us.
    assert deis.build_argv(["ssh"], url, "run", ["--", "ls", "-a"], tty=False)[-1] == "run --app web -- ls -a"


def test_run_gets_a_terminal() -> None:
    argv = deis.build_argv(["ssh", "-i", "k"], "ssh://git@h:2222/web.git", "run", ["bash"], tty=True)
    assert argv == ["ssh", "-i", "k", "-t", "-p", "2222", "git@h", "run --app web bash"]
