"""apps:info, apps:destroy, keys:*, perms:*, users:* and contrib/deis, end to end with stock ssh and git."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.traces import people, settled_traces, traces
from tests.harness import ROOT, Harness, Key, unique

pytestmark = pytest.mark.e2e


@dataclass
class Crew:
    owner: str
    collab: str
    stranger: str
    keys: dict[str, Key]


@pytest.fixture(scope="module")
def crew(platform: Harness) -> Crew:
    names = {"owner": unique("own"), "collab": unique("col"), "stranger": unique("str")}
    keys = {name: platform.add_user(name) for name in names.values()}
    return Crew(names["owner"], names["collab"], names["stranger"], keys)


@pytest.fixture(scope="module")
def deployed(platform: Harness, crew: Crew) -> tuple[str, Path]:
    """An app of `owner`, pushed twice (two images), with `collab` as collaborator."""
    app = unique("ppl")
    work = platform.checkout("hello", app)
    key = crew.keys[crew.owner]
    r = platform.push(work, key)
    assert r.returncode == 0, r.stderr
    platform.commit_change(work, "message.txt", "second\n")
    r = platform.push(work, key)
    assert r.returncode == 0, r.stderr
    r = platform.ssh(key, "perms:create", crew.collab, "--app", app)
    assert r.returncode == 0, r.stderr
    return app, work


# What traces() finds of a destroyed app: nothing at all.
GONE = {
    "etcd": {},
    "lock": {},
    "containers": [],
    "local_images": [],
    "registry_tags": [],
    "repo": False,
    "nginx": False,
    "nginx_log": False,
}


def refused(r: subprocess.CompletedProcess[str], message: str, code: int = 1) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == [f" !     {message}"]


def hidden(app: str) -> str:
    return f"app {app} does not exist or is not yours"


# -- apps:info / apps:list ------------------------------------------------------------------------
def test_apps_info_shows_build_url_containers_collaborators(
    platform: Harness, crew: Crew, deployed: tuple[str, Path]
) -> None:
    app, _ = deployed
    for user in (crew.owner, crew.collab):
        r = platform.ssh(crew.keys[user], "apps:info", app, "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["owner"] == crew.owner
        assert info["collaborators"] == [crew.collab]
        assert info["release"] == "v3"
        assert info["build"]["image"].startswith(f"{platform.settings.registry}/{app}:git-")
        assert info["build"]["kind"] == "dockerfile"
        assert info["containers"] == {"running": 1, "total": 1}
        assert info["url"] == f"http://{app}.localhost:{platform.settings.http_port}"
    plain = platform.ssh(crew.keys[crew.owner], "apps:info", "--app", app).stdout
    assert "containers     1 running of 1" in plain
    assert f"collaborators  {crew.collab}" in plain


def test_strangers_cannot_tell_an_app_from_a_missing_one(
    platform: Harness, crew: Crew, deployed: tuple[str, Path]
) -> None:
    app, _ = deployed
    key = crew.keys[crew.stranger]
    refused(platform.ssh(key, "apps:info", app), hidden(app))
    missing = unique("nope")
    refused(platform.ssh(key, "apps:info", missing), hidden(missing))
    # An explicit name that does not exist is an error, never a fallback to the caller's only app.
    refused(platform.ssh(crew.keys[crew.collab], "apps:info", missing), hidden(missing))
    assert app not in platform.ssh(key, "apps:list").stdout
    assert app in platform.ssh(crew.keys[crew.collab], "apps:list").stdout


# -- perms / users ----------------------------------------------------------------------------------
def test_perms_owner_manages_collaborators_collaborator_cannot(
    platform: Harness, admin: Key, crew: Crew, deployed: tuple[str, Path]
) -> None:
    app, _ = deployed
    owner, collab, stranger = (crew.keys[n] for n in (crew.owner, crew.collab, crew.stranger))
    r = platform.ssh(collab, "perms:list", "--app", app, "--json")
    assert json.loads(r.stdout) == {"app": app, "owner": crew.owner, "collaborators": [crew.collab]}
    before = settled_traces(platform, app)
    refused(
        platform.ssh(collab, "perms:create", crew.stranger, "--app", app),
        f"only the owner of {app} ({crew.owner}) or an admin may add collaborators",
    )
    refused(platform.ssh(stranger, "perms:create", crew.stranger, "--app", app), hidden(app))
    refused(platform.ssh(owner, "perms:create", "nobody-here", "--app", app), "no user named nobody-here")
    refused(
        platform.ssh(owner, "perms:create", crew.collab, "--app", app),
        f"{crew.collab} is already a collaborator on {app}",
    )
    assert settled_traces(platform, app) == before

    r = platform.ssh(owner, "perms:create", crew.stranger, "--app", app)
    assert r.returncode == 0, r.stderr
    assert platform.ssh(stranger, "apps:info", app).returncode == 0  # now a collaborator
    r = platform.ssh(admin, "perms:delete", crew.stranger, "--app", app)
    assert r.returncode == 0, r.stderr
    refused(platform.ssh(stranger, "apps:info", app), hidden(app))
    plain = platform.ssh(owner, "perms:list", "--app", app).stdout.splitlines()
    assert plain[1:] == [f"{crew.owner}  owner", f"{crew.collab}  collaborator"]


def test_admin_grants_and_revokes_admin_and_only_admins_list_users(
    platform: Harness, admin: Key, crew: Crew
) -> None:
    owner = crew.keys[crew.owner]
    before = people(platform)
    refused(platform.ssh(owner, "users:list"), "only an admin may list users")
    refused(platform.ssh(owner, "perms:create", crew.owner, "--admin"), "only an admin may grant admin")
    refused(platform.ssh(owner, "perms:list", "--admin"), "only an admin may list admins")
    refused(platform.ssh(owner, "perms:delete", "admin", "--admin"), "only an admin may revoke admin")
    assert people(platform) == before

    users = json.loads(platform.ssh(admin, "users:list", "--json").stdout)
    assert {"name": crew.owner, "admin": False, "keys": 1} in users
    assert platform.ssh(admin, "perms:create", crew.owner, "--admin").returncode == 0
    assert crew.owner in json.loads(platform.ssh(owner, "perms:list", "--admin", "--json").stdout)["admins"]
    assert platform.ssh(owner, "users:list").returncode == 0
    assert platform.ssh(owner, "perms:delete", crew.owner, "--admin").returncode == 0  # admins may drop it
    refused(platform.ssh(owner, "users:list"), "only an admin may list users")


# -- keys -------------------------------------------------------------------------------------------
def test_keys_add_list_remove_over_ssh(platform: Harness, admin: Key, crew: Crew) -> None:
    me = crew.keys[crew.collab]
    spare = platform.key(unique("spare"))
    r = platform.ssh(me, "keys:add", input=spare.public)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----> key SHA256:") and r.stdout.rstrip().endswith(
        f"added for {crew.collab}"
    )
    listed = json.loads(platform.ssh(me, "keys:list", "--json").stdout)
    assert sorted(k["name"] for k in listed) == sorted([crew.collab, spare.name]), (
        r.stdout,
        people(platform)["keys"],
        platform.ssh(me, "keys:list", "--json").stdout,
    )
    assert {k["user"] for k in listed} == {crew.collab}
    # The new key logs in as the same user.
    assert json.loads(platform.ssh(spare, "keys:list", "--json").stdout) == listed

    spare_fp = next(k["fingerprint"] for k in listed if k["name"] == spare.name)
    before = people(platform)
    # Whose key it is stays hidden from a non-admin.
    refused(
        platform.ssh(crew.keys[crew.owner], "keys:add", input=spare.public),
        f"key {spare_fp} is already registered",
    )
    refused(
        platform.ssh(me, "keys:add", input="ssh-ed25519 not-base64!"),
        "that is not an SSH public key: its key data is not base64",
    )
    refused(
        platform.ssh(me, "keys:add", "--user", crew.owner, input=spare.public),
        "only an admin may manage another user's keys",
    )
    refused(platform.ssh(me, "keys:list", "--all"), "only an admin may list every user's keys")
    refused(
        platform.ssh(me, "keys:remove", crew.owner, "--user", crew.owner),
        "only an admin may manage another user's keys",
    )
    refused(platform.ssh(me, "keys:remove", crew.owner), f"no key named {crew.owner!r}")
    assert people(platform) == before

    # Removing the key of the session itself is fine while another one remains; the last one is kept.
    r = platform.ssh(spare, "keys:remove", spare.name)
    assert r.returncode == 0, r.stderr
    refused(
        platform.ssh(me, "keys:remove", crew.collab),
        f"{crew.collab} is your last key: add another first (keys:add), or you could never log in again",
    )
    assert platform.ssh(spare, "help").returncode == 255  # ssh: Permission denied (publickey)


def test_admin_adds_a_key_for_a_new_user_and_lists_all(platform: Harness, admin: Key) -> None:
    name = unique("newbie")
    key = platform.key(name)
    r = platform.ssh(admin, "keys:add", "--user", name, input=key.public)
    assert r.returncode == 0, r.stderr
    assert f"-----> created user {name}" in r.stdout
    assert json.loads(platform.ssh(key, "keys:list", "--json").stdout)[0]["user"] == name
    everyone = json.loads(platform.ssh(admin, "keys:list", "--all", "--json").stdout)
    assert {"admin", name} <= {k["user"] for k in everyone}
    r = platform.ssh(admin, "keys:remove", name, "--user", name)  # an admin may take a user's last key
    assert r.returncode == 0, r.stderr
    assert platform.ssh(key, "help").returncode == 255


# -- apps:destroy -----------------------------------------------------------------------------------
def test_destroy_refusals_change_nothing(platform: Harness, crew: Crew, deployed: tuple[str, Path]) -> None:
    app, _ = deployed
    before = settled_traces(platform, app)
    assert before["containers"] and len(before["registry_tags"]) == 2 and before["repo"]
    assert before["nginx"] and before["nginx_log"]
    owner = crew.keys[crew.owner]
    refused(platform.ssh(crew.keys[crew.stranger], "apps:destroy", app, "--confirm", app), hidden(app))
    refused(
        platform.ssh(crew.keys[crew.collab], "apps:destroy", app, "--confirm", app),
        f"only the owner of {app} ({crew.owner}) or an admin may destroy it",
    )
    confirm = (
        f"destroying {app} removes its containers, images, repository and config for good; to go ahead:"
        f" apps:destroy {app} --confirm {app}"
    )
    refused(platform.ssh(owner, "apps:destroy", app), confirm, code=2)
    refused(platform.ssh(owner, "apps:destroy", app, "--confirm", "other"), confirm, code=2)
    assert settled_traces(platform, app) == before
    assert platform.get(app) == (200, "second\n")


def test_destroy_leaves_nothing_behind(platform: Harness, crew: Crew, deployed: tuple[str, Path]) -> None:
    app, work = deployed
    r = platform.ssh(crew.keys[crew.owner], "apps:destroy", "--app", app, "--confirm", app)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"-----> Destroying {app}"
    assert lines[-1] == f"-----> done, {app} destroyed"
    assert traces(platform, app) == GONE
    from tests.e2e.traces import registry_get

    status, _ = registry_get(
        platform, f"{app}/manifests/git-{platform.git(work, 'rev-parse', 'HEAD').stdout[:8]}"
    )
    assert status == 404
    status, _ = platform.get(app)
    assert status == 404  # the router no longer knows the host
    refused(platform.ssh(crew.keys[crew.owner], "apps:info", app), hidden(app))


# -- contrib/deis -----------------------------------------------------------------------------------
def test_client_helper_infers_the_app_and_quotes_arguments(platform: Harness, crew: Crew) -> None:
    app = unique("cli")
    key = crew.keys[crew.owner]
    assert platform.ssh(key, "apps:create", app).returncode == 0
    work = platform.checkout("hello", app)  # its `deis` remote is the harness's
    env = {**platform.git_env(key), "PYTHONPATH": ""}

    def deis(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "contrib" / "deis"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    tricky = "two words, 'quotes' \"double\" $(id) `id` ; | & * \\ end"
    r = deis("config:set", f"TRICKY={tricky}", "PLAIN=1")
    assert r.returncode == 0, r.stderr
    r = deis("config", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"TRICKY": tricky, "PLAIN": "1"}
    r = deis("apps:info", "--json")
    assert json.loads(r.stdout)["name"] == app
    r = deis("apps:list")  # takes no --app: the helper must not add one
    assert r.returncode == 0 and app in r.stdout, r.stderr
    r = deis("apps:destroy", "--confirm", app)
    assert r.returncode == 0, r.stderr
    assert traces(platform, app)["etcd"] == {}
    r = subprocess.run(
        [str(ROOT / "contrib" / "deis"), "apps:info"],
        cwd=platform.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and "no git remote named 'deis'" in r.stderr
    assert os.access(ROOT / "contrib" / "deis", os.X_OK)


def test_a_change_that_waited_for_a_destroy_leaves_no_orphans(platform: Harness, crew: Crew) -> None:
    from releaser.locks import AppLock
    from releaser.store import Store

    app = unique("race")
    key = crew.keys[crew.owner]
    assert platform.ssh(key, "apps:create", app).returncode == 0
    lock = AppLock(Store.of(platform.settings), app, owner="test")
    lock.acquire(5)
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    threads = [
        threading.Thread(
            target=lambda: results.update(set=platform.ssh(key, "config:set", "-a", app, "A=1"))
        ),
        threading.Thread(
            target=lambda: results.update(destroy=platform.ssh(key, "apps:destroy", app, "--confirm", app))
        ),
    ]
    for t in threads:
        t.start()
        time.sleep(0.5)  # both wait for the lock now
    lock.release()
    for t in threads:
        t.join(timeout=120)
    assert results["destroy"].returncode == 0, results["destroy"].stderr
    # Whichever went first, the app is gone for good: no release of a config:set that came too late.
    if results["set"].returncode != 0:
        assert results["set"].stderr.splitlines()[-1] == f" !     app {app} was destroyed meanwhile"
    assert traces(platform, app) == GONE
