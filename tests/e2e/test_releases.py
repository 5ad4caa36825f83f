"""releases, rollback, builds, limits and tags end to end: stock ssh against the real platform."""

from __future__ import annotations

import json
import subprocess

import docker
import pytest

from releaser import events
from releaser.store import Store
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def refused(r: subprocess.CompletedProcess[str], text: str, code: int = 1) -> None:
    """A one-line ` !     ` error containing `text`, with exit `code`."""
    assert r.returncode == code, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stderr.rstrip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith(" !     "), r.stderr
    assert text in lines[0], lines[0]


def releases_json(h: Harness, key: Key, app: str) -> list[dict]:
    return json.loads(ok(h.ssh(key, "releases", "--app", app, "--json")))


def container(h: Harness, app: str) -> dict:
    (name,) = h.containers(app)
    return docker.from_env().api.inspect_container(name)


def env_of(h: Harness, app: str) -> str:
    status, body = h.get(app, "/env")
    assert status == 200
    return body


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key):
    """One app, deployed once, with a work tree to push changes from: (name, work tree)."""
    name = unique("rel")
    work = platform.checkout("hello", name)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name, work


def test_releases_list_and_info(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    data = releases_json(platform, admin, name)
    assert [d["version"] for d in data[-2:]] == [2, 1]  # newest first
    v2 = next(d for d in data if d["version"] == 2)
    assert v2["by"] == "admin" and "admin deployed" in v2["summary"]
    assert v2["image"].startswith(f"{platform.settings.registry}/{name}:git-")
    out = ok(platform.ssh(admin, "releases", "--app", name))
    assert out.splitlines()[0].startswith("=== ") and "v1" in out.splitlines()[-1]
    assert "admin created initial release" in out
    info = json.loads(ok(platform.ssh(admin, "releases:info", "v2", "--app", name, "--json")))
    assert info["build"]["image"] == v2["image"] and info["build"]["kind"] == "dockerfile"
    assert info["config"] == {} and info["limits"] == {} and info["tags"] == {}
    assert "summary" in ok(platform.ssh(admin, "releases:info", "2", "--app", name))


def test_rollback_restores_old_code_and_old_config(platform: Harness, admin: Key, app) -> None:
    name, work = app
    ok(platform.ssh(admin, "config:set", "--app", name, "GREETING=one"))
    old = releases_json(platform, admin, name)[0]["version"]
    assert platform.get(name) == (200, "hello from v1 one\n")
    platform.commit_change(work, "message.txt", "hello from v2\n")
    assert platform.push(work, admin).returncode == 0
    ok(platform.ssh(admin, "config:set", "--app", name, "GREETING=two"))
    newest = releases_json(platform, admin, name)[0]["version"]
    assert platform.get(name) == (200, "hello from v2 two\n")

    r = ok(platform.ssh(admin, "releases:rollback", f"v{old}", "--app", name))
    assert f"Rolling back {name} to v{old} as v{newest + 1}" in r
    assert platform.get(name) == (200, "hello from v1 one\n")  # old code and old config
    assert "GREETING=one\n" in env_of(platform, name)
    assert f"DEIS_RELEASE=v{newest + 1}\n" in env_of(platform, name)
    assert platform.containers(name) == [f"{name}_v{newest + 1}.cmd.1"]
    top = releases_json(platform, admin, name)[0]
    assert (top["version"], top["summary"]) == (newest + 1, f"admin rolled back to v{old}")
    config = json.loads(ok(platform.ssh(admin, "config", "--app", name, "--json")))
    assert config == {"GREETING": "one"}

    ok(platform.ssh(admin, "releases:rollback", "--app", name))  # default: the one before the current
    assert platform.get(name) == (200, "hello from v2 two\n")
    assert releases_json(platform, admin, name)[0]["summary"] == f"admin rolled back to v{newest}"
    messages = [e.message for e in events.recent(Store.of(platform.settings), name)]
    assert f"admin rolled back to v{old}: v{newest + 1} deployed" in messages


def test_bad_release_commands_change_nothing(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    before = releases_json(platform, admin, name)
    refused(platform.ssh(admin, "releases:rollback", "v1", "--app", name), "v1 of " + name + " has no build")
    refused(platform.ssh(admin, "releases:rollback", "v999", "--app", name), f"{name} has no release v999")
    refused(platform.ssh(admin, "releases:info", "v999", "--app", name), f"{name} has no release v999")
    refused(platform.ssh(admin, "releases:info", "vx", "--app", name), "invalid release 'vx'")
    refused(platform.ssh(admin, "releases:info", "--app", name), "the following arguments are required", 2)
    refused(platform.ssh(admin, "releases", "--app", "no-such-app"), "app no-such-app does not exist")
    refused(
        platform.ssh(admin, "releases:rollback", "--app", "no-such-app"), "app no-such-app does not exist"
    )
    for cmd in ("limits:set", "tags:set", "builds:create"):
        refused(platform.ssh(admin, cmd, "x=1", "--app", "no-such-app"), "app no-such-app does not exist")
    assert releases_json(platform, admin, name) == before


def test_other_users_apps_are_refused(platform: Harness, admin: Key, alice: Key, app) -> None:
    name, _ = app
    before = releases_json(platform, admin, name)
    hidden = f"app {name} does not exist or is not yours"
    refused(platform.ssh(alice, "releases:rollback", "--app", name), hidden)
    refused(platform.ssh(alice, "limits:set", "cmd=1G", "--app", name), hidden)
    refused(platform.ssh(alice, "config:push", "--app", name, input="A=1\n"), hidden)
    assert releases_json(platform, admin, name) == before


def test_rollback_of_an_app_without_builds(platform: Harness, admin: Key) -> None:
    name = unique("nobuild")
    ok(platform.ssh(admin, "apps:create", name))
    refused(platform.ssh(admin, "releases:rollback", "--app", name), "no release before the current one")
    ok(platform.ssh(admin, "config:set", "--app", name, "A=1"))  # v2, config only
    refused(platform.ssh(admin, "releases:rollback", "--app", name), "has no build")
    assert [r["version"] for r in releases_json(platform, admin, name)] == [2, 1]


def test_limits_reach_the_container(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    assert json.loads(ok(platform.ssh(admin, "limits", "--app", name, "--json"))) == {}
    ok(platform.ssh(admin, "limits:set", "cmd=64M", "--app", name))
    assert container(platform, name)["HostConfig"]["Memory"] == 64 << 20
    ok(platform.ssh(admin, "limits:set", "--cpu", "cmd=512", "--app", name))
    host = container(platform, name)["HostConfig"]
    assert (host["Memory"], host["CpuShares"]) == (64 << 20, 512)
    assert json.loads(ok(platform.ssh(admin, "limits", "--app", name, "--json"))) == {
        "memory": {"cmd": "64m"},
        "cpu": {"cmd": 512},
    }
    assert "cmd" in ok(platform.ssh(admin, "limits", "--app", name))
    top = releases_json(platform, admin, name)[0]
    assert top["summary"] == "admin limited cpu of cmd=512"
    messages = [e.message for e in events.recent(Store.of(platform.settings), name)]
    assert f"admin limited cpu of cmd=512: v{top['version']} deployed" in messages

    before = releases_json(platform, admin, name)
    refused(platform.ssh(admin, "limits:set", "cmd=5", "--app", name), "invalid memory limit '5'")
    refused(platform.ssh(admin, "limits:set", "cmd=1M", "--app", name), "below docker's minimum")
    refused(platform.ssh(admin, "limits:set", "--cpu", "cmd=lots", "--app", name), "invalid cpu shares")
    refused(platform.ssh(admin, "limits:set", "Bad=1G", "--app", name), "invalid process type")
    refused(platform.ssh(admin, "limits:unset", "web", "--app", name), "no memory limit is set for web")
    refused(platform.ssh(admin, "limits:set", "--app", name), "the following arguments are required", 2)
    assert releases_json(platform, admin, name) == before

    ok(platform.ssh(admin, "limits:unset", "cmd", "--app", name))
    ok(platform.ssh(admin, "limits:unset", "--cpu", "cmd", "--app", name))
    host = container(platform, name)["HostConfig"]
    assert (host["Memory"], host["CpuShares"]) == (platform.settings.default_memory, 0)  # the default
    assert json.loads(ok(platform.ssh(admin, "limits", "--app", name, "--json"))) == {}
    assert "(others)  1024m (the platform's default)" in ok(platform.ssh(admin, "limits", "--app", name))
    assert platform.get(name)[0] == 200


def test_tags(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    ok(platform.ssh(admin, "tags:set", "environ=prod", "rack=r1", "--app", name))
    assert json.loads(ok(platform.ssh(admin, "tags", "--app", name, "--json"))) == {
        "environ": "prod",
        "rack": "r1",
    }
    top = releases_json(platform, admin, name)[0]
    assert top["summary"] == "admin tagged environ=prod, rack=r1"
    before = releases_json(platform, admin, name)
    refused(platform.ssh(admin, "tags:set", "Env=prod", "--app", name), "invalid tag key 'Env'")
    refused(platform.ssh(admin, "tags:set", "environ", "--app", name), "expected KEY=VALUE", 2)
    refused(platform.ssh(admin, "tags:unset", "nope", "--app", name), "tag nope is not set")
    assert releases_json(platform, admin, name) == before
    ok(platform.ssh(admin, "tags:unset", "rack", "--app", name))
    assert json.loads(ok(platform.ssh(admin, "tags", "--app", name, "--json"))) == {"environ": "prod"}
    assert "docker scheduler ignores them" in ok(platform.ssh(admin, "help"))
    assert platform.get(name)[0] == 200


def test_builds_and_builds_create(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    builds = json.loads(ok(platform.ssh(admin, "builds", "--app", name, "--json")))
    assert builds and all(b["kind"] == "dockerfile" for b in builds)
    assert [b["created"] for b in builds] == sorted((b["created"] for b in builds), reverse=True)
    image = builds[-1]["image"]  # the first push: "hello from v1"

    other = unique("img")
    ok(platform.ssh(admin, "apps:create", other))
    r = ok(
        platform.ssh(
            admin, "builds:create", image, "--app", other, "--procfile", "'web: python3 -u /app/app.py'"
        )
    )
    assert "listens on port 5000" in r and f"done, {other}:v2 deployed" in r
    assert platform.get(other) == (200, "hello from v1\n")
    assert platform.containers(other) == [f"{other}_v2.web.1"]
    (b,) = json.loads(ok(platform.ssh(admin, "builds", "--app", other, "--json")))
    assert (b["image"], b["kind"], b["procfile"], b["release"]) == (
        image,
        "image",
        {"web": "python3 -u /app/app.py"},
        "v2",
    )
    messages = [e.message for e in events.recent(Store.of(platform.settings), other)]
    assert f"admin deployed {image}: v2 deployed" in messages

    digests = docker.from_env().images.get(image).attrs["RepoDigests"]
    by_digest = next(d for d in digests if d.startswith(f"{platform.settings.registry}/{name}@sha256:"))
    r = ok(platform.ssh(admin, "builds:create", by_digest, "--app", other))
    assert f"done, {other}:v3 deployed" in r  # no Procfile: the image's own CMD runs as cmd
    assert platform.get(other) == (200, "hello from v1\n")

    before = releases_json(platform, admin, other)
    refused(platform.ssh(admin, "builds:create", "python:3", "--app", other), "not in the platform registry")
    missing = f"{platform.settings.registry}/{other}:nope"
    refused(
        platform.ssh(admin, "builds:create", missing, "--app", other),
        f"image {missing} is not in the platform",
    )
    refused(
        platform.ssh(admin, "builds:create", image, "--procfile", "'no colon'", "--app", other),
        "Procfile line 1",
    )
    refused(platform.ssh(admin, "builds:create", "--app", other), "the following arguments are required", 2)
    assert releases_json(platform, admin, other) == before
