"""config:set / config:push / config:pull end to end: hostile values kept exactly, all the way through.

config:set (each argument shlex-quoted: the server splits the command line with shell quoting) ->
the running container's environment (GET /env through the router) -> config:pull -> config:push
into another app -> an identical config.
"""

from __future__ import annotations

import json
import shlex

import pytest

from gitserver import dotenv
from tests.e2e.test_releases import ok, refused, releases_json
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

HOSTILE = {
    "SQ": "it's",
    "DQ": 'say "hi"',
    "BOTH": "'a' \"b\" \\\" \\'",
    "SPACES": "  two  words  ",
    "EQ": "a=b==c",
    "SUBST": "$(id) ${HOME} $HOME; rm -rf / &",
    "TICKS": "`uname -a`",
    "NL": "line1\nline2\n\nend",
    "BS": "C:\\path\\n\\\\",
    "HASH": "x # not a comment",
    "UNI": "grüße 日本 🚀",
    "EMPTY": "",
    "TAB": "\ta\tb",
    "DOTENV": 'export X="1"',
    "BIG": "0123456789abcdef" * 1024,  # 16 KiB through the command line
}


def config_of(h: Harness, key: Key, app: str) -> dict[str, str]:
    return json.loads(ok(h.ssh(key, "config", "--app", app, "--json")))


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key) -> str:
    name = unique("cfg")
    work = platform.checkout("hello", name)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name


def test_hostile_values_round_trip_through_the_container(platform: Harness, admin: Key, app: str) -> None:
    args = [shlex.quote(f"{k}={v}") for k, v in HOSTILE.items()]
    ok(platform.ssh(admin, "config:set", "--app", app, *args))
    assert config_of(platform, admin, app) == HOSTILE
    env = "\n" + platform.get(app, "/env")[1]
    for k, v in HOSTILE.items():  # the app prints KEY=value lines, sorted
        assert f"\n{k}={v}\n" in env, k

    pulled = ok(platform.ssh(admin, "config:pull", "--app", app))
    assert dotenv.parse(pulled) == HOSTILE
    other = unique("cfg2")
    ok(platform.ssh(admin, "apps:create", other))
    r = ok(platform.ssh(admin, "config:push", "--app", other, input=pulled))
    assert f"{other}:v2 recorded" in r
    assert config_of(platform, admin, other) == HOSTILE
    assert ok(platform.ssh(admin, "config:pull", "--app", other)) == pulled
    top = releases_json(platform, admin, other)[0]
    assert top["summary"] == f"admin pushed config {', '.join(sorted(HOSTILE))}"


def test_push_of_a_64k_value_and_a_hand_written_file(platform: Harness, admin: Key) -> None:
    name = unique("cfg3")
    ok(platform.ssh(admin, "apps:create", name))
    big = {"BIG": "x'\"\\\n$(a)`b` ü" * 4700, "PLAIN": "1"}
    assert len(big["BIG"]) >= 64 * 1024
    ok(platform.ssh(admin, "config:push", "--app", name, input=dotenv.render(big)))
    assert config_of(platform, admin, name) == big
    assert dotenv.parse(ok(platform.ssh(admin, "config:pull", "--app", name))) == big

    text = "# settings\nexport DATABASE_URL=postgres://db/app#frag\nGREETING='hello world'\nMULTI=\"a\\nb\"\n"
    ok(platform.ssh(admin, "config:push", "--app", name, input=text))
    config = config_of(platform, admin, name)
    assert config["DATABASE_URL"] == "postgres://db/app#frag"
    assert (config["GREETING"], config["MULTI"], config["PLAIN"]) == ("hello world", "a\nb", "1")

    before = releases_json(platform, admin, name)
    r = ok(platform.ssh(admin, "config:push", "--app", name, input="PLAIN=1\n"))
    assert "already matches; no new release" in r
    ok(platform.ssh(admin, "config:push", "--replace", "--app", name, input="PLAIN=2\n"))
    assert config_of(platform, admin, name) == {"PLAIN": "2"}
    assert len(releases_json(platform, admin, name)) == len(before) + 1


def test_config_push_serves_the_new_values(platform: Harness, admin: Key, app: str) -> None:
    ok(platform.ssh(admin, "config:push", "--app", app, input="GREETING='pushed  value'\n"))
    assert platform.get(app) == (200, "hello from v1 pushed  value\n")


def test_bad_config_input_changes_nothing(platform: Harness, admin: Key, app: str) -> None:
    before = releases_json(platform, admin, app)
    config = config_of(platform, admin, app)
    refused(platform.ssh(admin, "config:set", "--app", app, "1BAD=x"), "invalid config key '1BAD'")
    refused(platform.ssh(admin, "config:set", "--app", app, "A=1", "NOEQUALS"), "expected KEY=value", 2)
    refused(platform.ssh(admin, "config:set", "--app", app), "the following arguments are required", 2)
    refused(platform.ssh(admin, "config:set", "--app", app, "'A=open"), "check your quotes", 2)
    refused(platform.ssh(admin, "config:unset", "--app", app, "NOT_SET"), "config var NOT_SET is not set")
    refused(
        platform.ssh(admin, "config:set", "--app", "no-such-app", "A=1"), "app no-such-app does not exist"
    )
    refused(platform.ssh(admin, "config:pull", "--app", "no-such-app"), "app no-such-app does not exist")
    refused(platform.ssh(admin, "config:push", "--app", app, input="A=1\nB='open\n"), "line 2: unterminated")
    refused(
        platform.ssh(admin, "config:push", "--app", app, input="A=1\n2X=y\n"), "line 2: invalid config key"
    )
    refused(
        platform.ssh(admin, "config:push", "--app", app, input="JUST TEXT\n"), "line 1: expected KEY=value"
    )
    assert releases_json(platform, admin, app) == before
    assert config_of(platform, admin, app) == config
