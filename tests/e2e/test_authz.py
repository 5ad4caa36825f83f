"""The authorization matrix: owner / collaborator / stranger / admin x every registered command + git.

Each command maps to a harmless invocation per role and the outcome expected for that role:
    ok        exit 0
    hidden    the app-scoped refusal a stranger gets: the same line a missing app gives
    denied    another one-line refusal (manager-only or admin-only)
Every refusal must also leave the app, the users and the keys exactly as they were.

A command registered in gitserver.commands.registry but missing from TABLE fails this file:
whoever adds a command adds its row here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gitserver.commands import registry
from tests.e2e.traces import people, settled_traces
from tests.harness import Harness, Key, unique
from tests.pki import TestCA

pytestmark = pytest.mark.e2e

OK, HIDDEN, DENIED = "ok", "hidden", "denied"
SVC_HIDDEN = "service hidden"  # what a stranger hears of another's backing service: a missing one's line
ROLES = ("stranger", "collaborator", "owner", "admin")  # refusals first, while the app is untouched
APP_USERS = {"stranger": HIDDEN, "collaborator": OK, "owner": OK, "admin": OK}
MANAGERS = {"stranger": HIDDEN, "collaborator": DENIED, "owner": OK, "admin": OK}
ADMINS = {"stranger": DENIED, "collaborator": DENIED, "owner": DENIED, "admin": OK}
EVERYONE = dict.fromkeys(ROLES, OK)
# Of the shared service: `owner` made it, `collaborator` uses it through the linked app.
SVC_USERS = {"stranger": SVC_HIDDEN, "collaborator": OK, "owner": OK, "admin": OK}
SVC_MANAGERS = {"stranger": SVC_HIDDEN, "collaborator": DENIED, "owner": OK, "admin": OK}


@dataclass
class World:
    h: Harness
    app: str  # deployed once, owned by `owner`, with `collaborator` on it
    work: Path
    keys: dict[str, Key]  # role -> key
    users: dict[str, str]  # role -> user name
    service: str = ""  # a redis of `owner`, linked to `app`
    scratch: dict[str, str] = field(default_factory=dict)

    def ssh(self, role: str, *argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.h.ssh(self.keys[role], *argv, input=input)


Run = Callable[[World, str], subprocess.CompletedProcess[str]]


def _scratch_app(w: World, role: str) -> str:
    """A fresh, never-deployed app of `owner` for the commands that end an app."""
    name = unique("authz")
    r = w.ssh("owner", "apps:create", name)
    assert r.returncode == 0, r.stderr
    return name


def _destroy(w: World, role: str) -> subprocess.CompletedProcess[str]:
    target = _scratch_app(w, role) if MANAGERS[role] == OK else w.app
    return w.ssh(role, "apps:destroy", target, "--confirm", target)


def _keys_add(w: World, role: str) -> subprocess.CompletedProcess[str]:
    w.scratch[f"key-{role}"] = name = unique(f"k{role[:3]}")
    return w.ssh(role, "keys:add", input=w.h.key(name).public)


def _perm_target(role: str) -> str:
    return {"owner": "extra1", "admin": "extra2"}.get(role, "extra1")


def _both(first: Run, then: Run) -> Run:
    """Run `first` (to set something up) unless the role is refused anyway, then `then`."""

    def run(w: World, role: str) -> subprocess.CompletedProcess[str]:
        if role != "stranger":
            assert first(w, role).returncode == 0
        return then(w, role)

    return run


def _image(w: World) -> str:
    """The image of the app's current build, for builds:create."""
    r = w.ssh("owner", "releases", "--json", "--app", w.app)
    return next(rel["image"] for rel in json.loads(r.stdout) if rel.get("image"))


def _cert(w: World, role: str) -> str:
    if "ca" not in w.scratch:
        w.scratch["ca"] = str(w.h.root / "authz-ca")
        Path(w.scratch["ca"]).mkdir(exist_ok=True)
    ca = TestCA.make(Path(w.scratch["ca"]))
    chain, key = ca.issue(["*.authz.example.com"])  # covers every role's domain added below
    return chain + key


def _auto(*setup: str, then: str) -> Run:
    """`then` on a fresh app of `owner` with `collaborator` on it (and no domain, so certs:auto asks
    no ACME server); a stranger tries the shared app."""

    def run(w: World, role: str) -> subprocess.CompletedProcess[str]:
        if role == "stranger":
            return w.ssh(role, then, "--app", w.app)
        name = _scratch_app(w, role)
        assert w.ssh("owner", "perms:create", w.users["collaborator"], "--app", name).returncode == 0
        for cmd in setup:
            assert w.ssh("owner", cmd, "--app", name).returncode == 0
        return w.ssh(role, then, "--app", name)

    return run


def _app_cmd(*argv: str, input: Callable[[World, str], str] | None = None) -> Run:
    """`argv` (with {role} filled in) against the shared app."""

    def run(w: World, role: str) -> subprocess.CompletedProcess[str]:
        args = [a.format(role=role, ROLE=role.upper()) for a in argv]
        return w.ssh(role, *args, "--app", w.app, input=input(w, role) if input else None)

    return run


def _push(w: World, role: str) -> subprocess.CompletedProcess[str]:
    # A branch other than master: stored, not deployed, so the check stays fast.
    return w.h.git(w.work, "push", "deis", f"HEAD:refs/heads/authz-{role}", key=w.keys[role], check=False)


def _fetch(w: World, role: str) -> subprocess.CompletedProcess[str]:
    return w.h.git(w.work, "ls-remote", "deis", key=w.keys[role], check=False)


def _drain(role: str, kind: str = "") -> str:
    # Loopback, where nothing listens: the sender's attempts stay on this host.
    return f"syslog://127.0.0.1:{9100 + 10 * bool(kind) + sorted(EVERYONE).index(role)}"


def _svc_cmd(*argv: str, input: str | None = None) -> Run:
    """`argv` ({svc} is the shared service, {role} the role) as the role."""

    def run(w: World, role: str) -> subprocess.CompletedProcess[str]:
        return w.ssh(role, *(a.format(svc=w.service, role=role) for a in argv), input=input)

    return run


def _own_service(then: Callable[[World, str, str], subprocess.CompletedProcess[str]]) -> Run:
    """Roles that may manage: `then` on a fresh redis of `owner` (destroyed after); the others try
    the shared one."""

    def run(w: World, role: str) -> subprocess.CompletedProcess[str]:
        if SVC_MANAGERS[role] != OK:
            return then(w, role, w.service)
        name = unique("authzs")
        assert w.ssh("owner", "services:create", "redis", name).returncode == 0
        try:
            return then(w, role, name)
        finally:
            w.ssh("owner", "services:unlink", name, "--app", w.app)
            w.ssh("owner", "services:destroy", name, "--confirm", name)

    return run


def _svc_create(w: World, role: str) -> subprocess.CompletedProcess[str]:
    name = unique(f"s{role[:4]}")
    r = w.ssh(role, "services:create", "redis", name)
    w.ssh(role, "services:destroy", name, "--confirm", name)
    return r


def _svc_destroy(w: World, role: str, name: str) -> subprocess.CompletedProcess[str]:
    return w.ssh(role, "services:destroy", name, "--confirm", name)


def _svc_link(w: World, role: str, name: str) -> subprocess.CompletedProcess[str]:
    return w.ssh(role, "services:link", name, "--app", w.app, "--as", f"AUTHZ_{role.upper()}_URL")


def _svc_unlink(w: World, role: str, name: str) -> subprocess.CompletedProcess[str]:
    if name != w.service:
        assert _svc_link(w, "owner", name).returncode == 0
    return w.ssh(role, "services:unlink", name, "--app", w.app)


def _svc_restore(w: World, role: str) -> subprocess.CompletedProcess[str]:
    """The shared service's own dump, restored (binary on the wire: the RDB is not text)."""
    dump = b"" if role == "stranger" else _raw(w, "owner", "services:backup", w.service).stdout
    return _text(_raw(w, role, "services:restore", w.service, data=dump))


def _svc_backup(w: World, role: str) -> subprocess.CompletedProcess[str]:
    return _text(_raw(w, role, "services:backup", w.service))


def _raw(w: World, role: str, *command: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    argv = [*w.h.ssh_argv(w.keys[role]), "git@127.0.0.1", *command]
    return subprocess.run(argv, input=data, capture_output=True, timeout=180, check=False)


def _text(r: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode()
    )


# command -> (how each role invokes it, the outcome per role)
TABLE: dict[str, tuple[Run, dict[str, str]]] = {
    "help": (lambda w, r: w.ssh(r, "help"), EVERYONE),
    "apps:list": (lambda w, r: w.ssh(r, "apps:list"), EVERYONE),
    "apps:create": (lambda w, r: w.ssh(r, "apps:create", unique("mine")), EVERYONE),
    "apps:info": (lambda w, r: w.ssh(r, "apps:info", w.app), APP_USERS),
    "apps:destroy": (_destroy, MANAGERS),
    "config": (lambda w, r: w.ssh(r, "config", "--app", w.app), APP_USERS),
    "config:set": (lambda w, r: w.ssh(r, "config:set", "--app", w.app, f"AUTHZ_{r.upper()}=1"), APP_USERS),
    "config:unset": (
        lambda w, r: w.ssh(
            r, "config:unset", "--app", w.app, f"AUTHZ_{'OWNER' if r == 'stranger' else r.upper()}"
        ),
        APP_USERS,
    ),
    "keys:add": (_keys_add, EVERYONE),
    "keys:list": (lambda w, r: w.ssh(r, "keys:list"), EVERYONE),
    "keys:remove": (lambda w, r: w.ssh(r, "keys:remove", w.scratch[f"key-{r}"]), EVERYONE),
    "perms:list": (lambda w, r: w.ssh(r, "perms:list", "--app", w.app), APP_USERS),
    "perms:create": (
        lambda w, r: w.ssh(r, "perms:create", w.users[_perm_target(r)], "--app", w.app),
        MANAGERS,
    ),
    "perms:delete": (
        lambda w, r: w.ssh(r, "perms:delete", w.users[_perm_target(r)], "--app", w.app),
        MANAGERS,
    ),
    "users:list": (lambda w, r: w.ssh(r, "users:list"), ADMINS),
    "scheduler": (lambda w, r: w.ssh(r, "scheduler"), EVERYONE),
    # The one in use already: the admin's call succeeds without moving the session's apps.
    "scheduler:set": (lambda w, r: w.ssh(r, "scheduler:set", "docker"), ADMINS),
    "buildpacks": (lambda w, r: w.ssh(r, "buildpacks"), EVERYONE),
    "builds:purge-cache": (_app_cmd("builds:purge-cache"), APP_USERS),
    "config:push": (_app_cmd("config:push", input=lambda w, r: f"AUTHZ_PUSH_{r.upper()}=1\n"), APP_USERS),
    "config:pull": (_app_cmd("config:pull"), APP_USERS),
    "releases": (_app_cmd("releases"), APP_USERS),
    "releases:info": (_app_cmd("releases:info", "v2"), APP_USERS),
    "releases:rollback": (_app_cmd("releases:rollback"), APP_USERS),
    "builds": (_app_cmd("builds"), APP_USERS),
    "builds:create": (lambda w, r: w.ssh(r, "builds:create", _image(w), "--app", w.app), APP_USERS),
    "limits": (_app_cmd("limits"), APP_USERS),
    "limits:set": (_app_cmd("limits:set", "cmd=256M"), APP_USERS),
    "limits:unset": (_both(_app_cmd("limits:set", "cmd=256M"), _app_cmd("limits:unset", "cmd")), APP_USERS),
    "tags": (_app_cmd("tags"), APP_USERS),
    "tags:set": (_app_cmd("tags:set", "authz={role}"), APP_USERS),
    "tags:unset": (_both(_app_cmd("tags:set", "authz={role}"), _app_cmd("tags:unset", "authz")), APP_USERS),
    "ps": (_app_cmd("ps"), APP_USERS),
    "ps:scale": (_app_cmd("ps:scale", "cmd=1"), APP_USERS),
    "ps:restart": (_app_cmd("ps:restart"), APP_USERS),
    "logs": (_app_cmd("logs", "-n", "5"), APP_USERS),
    "metrics": (_app_cmd("metrics"), APP_USERS),
    "drains": (_app_cmd("drains"), APP_USERS),
    "drains:add": (lambda w, r: w.ssh(r, "drains:add", _drain(r), "--app", w.app), APP_USERS),
    "drains:remove": (
        _both(
            lambda w, r: w.ssh(r, "drains:add", _drain(r, "rm"), "--app", w.app),
            lambda w, r: w.ssh(r, "drains:remove", _drain(r, "rm"), "--app", w.app),
        ),
        APP_USERS,
    ),
    "run": (lambda w, r: w.ssh(r, "run", "--app", w.app, "--", "true"), APP_USERS),
    "domains": (_app_cmd("domains"), APP_USERS),
    "domains:add": (_app_cmd("domains:add", "{role}.authz.example.com"), APP_USERS),
    "domains:remove": (_app_cmd("domains:remove", "{role}.authz.example.com"), APP_USERS),
    "certs": (_app_cmd("certs"), APP_USERS),
    "certs:add": (
        _both(_app_cmd("domains:add", "cert-{role}.authz.example.com"), _app_cmd("certs:add", input=_cert)),
        APP_USERS,
    ),
    "certs:remove": (_both(_app_cmd("certs:add", input=_cert), _app_cmd("certs:remove")), APP_USERS),
    "certs:auto": (_auto(then="certs:auto"), APP_USERS),
    "certs:auto:off": (_auto("certs:auto", then="certs:auto:off"), APP_USERS),
    "router": (_app_cmd("router"), APP_USERS),
    "router:set": (_app_cmd("router:set", "body_size=10m"), APP_USERS),
    "router:unset": (
        _both(_app_cmd("router:set", "body_size=10m"), _app_cmd("router:unset", "body_size")),
        APP_USERS,
    ),
    "storage:list": (_app_cmd("storage:list"), APP_USERS),
    "storage:mount": (_app_cmd("storage:mount", "v{role}:/data/{role}"), APP_USERS),
    "storage:unmount": (
        _both(_app_cmd("storage:mount", "u{role}:/data/u{role}"), _app_cmd("storage:unmount", "u{role}")),
        APP_USERS,
    ),
    # backing services: the roles are the shared service's (see SVC_USERS)
    "services": (_svc_cmd("services"), EVERYONE),
    "services:create": (_svc_create, EVERYONE),
    "services:info": (_svc_cmd("services:info", "{svc}"), SVC_USERS),
    "services:destroy": (_own_service(_svc_destroy), SVC_MANAGERS),
    "services:link": (_own_service(_svc_link), SVC_MANAGERS),
    "services:unlink": (_own_service(_svc_unlink), SVC_MANAGERS),
    "services:backup": (_svc_backup, SVC_USERS),
    "services:restore": (_svc_restore, SVC_MANAGERS),
    "services:backups": (_svc_cmd("services:backups", "{svc}"), SVC_USERS),
    "services:backups:schedule": (
        _svc_cmd("services:backups:schedule", "{svc}", "03:00", "--keep", "2"),
        SVC_MANAGERS,
    ),
    "services:connect": (_svc_cmd("services:connect", "{svc}", input="PING\n"), SVC_USERS),
    "services:restart": (_svc_cmd("services:restart", "{svc}"), SVC_USERS),
    "services:logs": (_svc_cmd("services:logs", "{svc}", "-n", "5"), SVC_USERS),
    # git access, through the same authorization
    "git-receive-pack": (_push, {**APP_USERS, "stranger": DENIED}),  # a push names its app: no hiding
    "git-upload-pack": (_fetch, APP_USERS),
}


def test_every_registered_command_is_in_the_matrix() -> None:
    missing = sorted(set(registry.commands) - set(TABLE))
    assert not missing, f"add these commands to tests/e2e/test_authz.py TABLE: {missing}"


@pytest.fixture(scope="module")
def world(platform: Harness, admin: Key) -> Iterator[World]:
    users = {role: unique(role[:5]) for role in ("stranger", "collaborator", "owner", "extra1", "extra2")}
    keys = {role: platform.add_user(name) for role, name in users.items()}
    keys["admin"], users["admin"] = admin, "admin"
    app = unique("authz")
    work = platform.checkout("hello", app)
    r = platform.push(work, keys["owner"])
    assert r.returncode == 0, r.stderr
    assert platform.ssh(keys["owner"], "perms:create", users["collaborator"], "--app", app).returncode == 0
    service = unique("authzsvc")
    for argv in (("services:create", "redis", service), ("services:link", service, "--app", app)):
        r = platform.ssh(keys["owner"], *argv)
        assert r.returncode == 0, r.stderr
    yield World(platform, app, work, keys, users, service)
    platform.ssh(keys["owner"], "services:unlink", service, "--app", app)
    platform.ssh(keys["owner"], "services:destroy", service, "--confirm", service)


def changes(before: object, after: object, path: str = "") -> list[str]:
    """The leaves that differ between two nested snapshots (for a readable failure)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            c
            for k in sorted(set(before) | set(after), key=str)
            for c in changes(before.get(k), after.get(k), f"{path}/{k}")
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


@pytest.mark.parametrize("name", list(TABLE))
def test_matrix(world: World, name: str) -> None:
    run, expected = TABLE[name]
    for role in ROLES:
        before = (settled_traces(world.h, world.app), people(world.h))
        r = run(world, role)
        outcome = expected[role]
        where = f"{name} as {role}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        if outcome == OK:
            assert r.returncode == 0, where
            continue
        assert r.returncode != 0, where
        after = (settled_traces(world.h, world.app), people(world.h))
        assert after == before, f"{where}\nchanged: {changes(before, after)}"
        if name.startswith("git-"):
            assert r.stderr.startswith(" !     "), where
            if outcome == HIDDEN:
                assert f"app {world.app} does not exist or is not yours" in r.stderr, where
            continue
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(" !     "), where
        if outcome == HIDDEN:
            assert lines[0] == f" !     app {world.app} does not exist or is not yours", where
        elif outcome == SVC_HIDDEN:
            assert lines[0] == f" !     service {world.service} does not exist or is not yours", where
        else:
            assert "only" in lines[0] and world.app not in r.stdout, where


def test_listings_show_only_accessible_apps(world: World) -> None:
    for role, sees in (("stranger", False), ("collaborator", True), ("owner", True), ("admin", True)):
        assert (world.app in world.ssh(role, "apps:list").stdout) is sees, role
