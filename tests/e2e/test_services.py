"""services:* end to end with stock ssh: real postgres and redis in containers of the addons image.

Create, list, info; link an app (DATABASE_URL / REDIS_URL through a new release); the app's one-off
reaches the service (postgres answers its protocol, redis PING with AUTH) and a stranger's container
cannot; connect and write rows with quotes, newlines and unicode; backup, restore into a second
service, read back exactly; data survives services:restart; unlink; destroy refused while linked.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from addons import engine as svc_engine
from appliance import backups, components
from appliance.platform import Platform
from tests.e2e.test_releases import ok, refused
from tests.harness import Harness, Key, unique
from tests.load import Load

pytestmark = pytest.mark.e2e

# Rows a dump and restore must keep byte for byte.
ROWS = ["it's", 'say "hi"', "line1\nline2\n", "grüße 日本 🚀", "back\\slash", "tab\there", ""]

# Run in the app's one-off: speak the service's protocol to the URL in the named variable.
PG_PROBE = r"""
import os, socket, struct, sys, urllib.parse
u = urllib.parse.urlsplit(os.environ[sys.argv[1]])
s = socket.create_connection((u.hostname, u.port), timeout=5)
params = b"user\0" + u.username.encode() + b"\0database\0" + u.path[1:].encode() + b"\0\0"
s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
kind, size, code = struct.unpack("!cii", s.recv(9))
print("pg-auth", kind.decode(), code)
"""
REDIS_PROBE = r"""
import os, socket, sys, urllib.parse
u = urllib.parse.urlsplit(os.environ[sys.argv[1]])
s = socket.create_connection((u.hostname, u.port), timeout=5)
pw = urllib.parse.unquote(u.password)
s.sendall(b"PING\r\nAUTH " + pw.encode() + b"\r\nPING\r\n")
data = b""
while data.count(b"\r\n") < 3:
    data += s.recv(100)
print(data.decode().replace("\r\n", "|"))
"""
# From a stranger's one-off: try the service's address directly.
REACH = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print("connected")
except OSError as e:
    print("unreachable", type(e).__name__)
"""


def raw_ssh(
    h: Harness, key: Key, *command: str, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*h.ssh_argv(key), "git@127.0.0.1", *command],
        input=data if data is not None else b"",
        capture_output=True,
        timeout=180,
        check=False,
    )


def run(h: Harness, key: Key, app: str, *argv: str) -> str:
    """A one-off in the app (each word quoted: the server splits the command line like a shell).

    Its output is what counts: the engine here sometimes fails to remove an auto-removed container
    ("unlinkat ... directory not empty", exit 125) after the command ran to its end."""
    r = h.ssh(key, "run", "-a", app, "--", *(shlex.quote(a) for a in argv))
    assert r.returncode == 0 or "unable to remove filesystem" in r.stderr, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def psql(h: Harness, key: Key, name: str, sql: str) -> str:
    return ok(h.ssh(key, "services:connect", name, input=sql))


@pytest.fixture(scope="module")
def bob(platform: Harness) -> Key:
    return platform.add_user("bob-svc")


@pytest.fixture(scope="module")
def app(platform: Harness, alice: Key) -> str:
    name = unique("svcapp")
    r = platform.push(platform.checkout("hello", name), alice)
    assert r.returncode == 0, r.stderr
    return name


@pytest.fixture(scope="module")
def pg(platform: Harness, alice: Key) -> Iterator[str]:
    name = unique("pg")
    out = ok(platform.ssh(alice, "services:create", "postgres", name, timeout=900))
    assert f"done, postgres service {name} created" in out
    yield name
    platform.ssh(alice, "services:destroy", name, "--confirm", name)


def test_create_list_info_and_bad_input(platform: Harness, alice: Key, bob: Key, pg: str) -> None:
    listed = json.loads(ok(platform.ssh(alice, "services:list", "--json")))
    mine = [s for s in listed if s["name"] == pg]
    assert mine and mine[0]["kind"] == "postgres" and mine[0]["status"] == "running"
    info = json.loads(ok(platform.ssh(alice, "services:info", pg, "--json")))
    assert info["version"].startswith("postgres (PostgreSQL) 15")
    assert info["url"].startswith("postgres://app:") and info["url"].endswith(f"@{pg}:5432/app")
    assert info["health"] in ("starting", "healthy") and info["size"] > 0
    # A stranger sees nothing of it.
    assert pg not in ok(platform.ssh(bob, "services:list"))
    refused(platform.ssh(bob, "services:info", pg), f"service {pg} does not exist or is not yours")
    refused(platform.ssh(bob, "services:destroy", pg, "--confirm", pg), "does not exist or is not yours")
    # Bad input: one line, nothing changes.
    refused(platform.ssh(alice, "services:create", "mysql", "x"), "unknown service kind 'mysql'")
    refused(platform.ssh(alice, "services:create", "redis", "Bad_Name"), "invalid service name 'Bad_Name'")
    refused(platform.ssh(alice, "services:create", "redis", pg), f"service {pg} already exists")
    refused(platform.ssh(alice, "services:destroy", pg), f"add --confirm {pg}")
    assert ok(platform.ssh(alice, "services:info", pg))


def test_the_password_is_in_no_argv_and_no_log(platform: Harness, alice: Key, pg: str) -> None:
    info = json.loads(ok(platform.ssh(alice, "services:info", pg, "--json")))
    secret = info["url"].split(":")[2].split("@")[0]
    c = docker.from_env().containers.get(svc_engine.container_name(str(platform.settings.state_dir), pg))
    assert secret not in json.dumps(c.attrs)
    assert secret.encode() not in c.logs()
    password = svc_engine.paths(platform.settings.state_dir, pg).password
    assert password.stat().st_mode & 0o777 == 0o600


def test_link_reach_and_a_stranger_cannot(platform: Harness, alice: Key, bob: Key, app: str, pg: str) -> None:
    out = ok(platform.ssh(alice, "services:link", pg, "-a", app))
    assert f"done, {app}:v" in out
    config = json.loads(ok(platform.ssh(alice, "config", "-a", app, "--json")))
    assert config["DATABASE_URL"].endswith(f"@{pg}:5432/app")
    refused(platform.ssh(alice, "services:link", pg, "-a", app), f"linked to {app} already")
    # postgres answers its protocol with a SCRAM challenge (AuthenticationSASL, code 10).
    r = run(platform, alice, app, "python3", "-c", PG_PROBE, "DATABASE_URL")
    assert "pg-auth R 10" in r
    # A stranger's app, on the same engine, cannot reach the service at any of its addresses.
    other = unique("svcbob")
    assert platform.push(platform.checkout("hello", other), bob).returncode == 0
    c = docker.from_env().containers.get(svc_engine.container_name(str(platform.settings.state_dir), pg))
    addresses = [n["IPAddress"] for n in c.attrs["NetworkSettings"]["Networks"].values()]
    assert len(addresses) == 2
    for ip in addresses:
        r = run(platform, bob, other, "python3", "-c", REACH, ip, "5432")
        assert "unreachable" in r, r
    r = run(platform, bob, other, "python3", "-c", REACH, pg, "5432")
    assert "unreachable" in r
    refused(platform.ssh(bob, "services:link", pg, "-a", other), "does not exist or is not yours")
    # Linked app's people may use the service, not manage it.
    refused(platform.ssh(alice, "services:destroy", pg, "--confirm", pg), "linked to")
    ok(platform.ssh(bob, "apps:destroy", other, "--confirm", other))


def test_backup_and_restore_into_a_second_service_exactly(platform: Harness, alice: Key, pg: str) -> None:
    values = ",".join("(" + "'" + v.replace("'", "''") + "')" for v in ROWS)
    psql(
        platform,
        alice,
        pg,
        f"CREATE TABLE notes (id serial, body text); INSERT INTO notes (body) VALUES {values};",
    )
    dump = raw_ssh(platform, alice, "services:backup", pg)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.startswith(b"PGDMP")  # pg_dump's custom format
    second = unique("pg2")
    ok(platform.ssh(alice, "services:create", "postgres", second, timeout=300))
    try:
        r = raw_ssh(platform, alice, "services:restore", second, data=dump.stdout)
        assert r.returncode == 0, r.stderr
        query = "COPY (SELECT body FROM notes ORDER BY id) TO STDOUT (FORMAT csv);"
        assert psql(platform, alice, second, query) == psql(platform, alice, pg, query)
        got = psql(
            platform,
            alice,
            second,
            "SELECT encode(convert_to(string_agg(body, '|' ORDER BY id), 'UTF8'), 'hex') FROM notes;",
        )
        want = "|".join(ROWS).encode().hex()
        assert want in got
        # the restored objects belong to the app's role
        assert "app" in psql(
            platform, alice, second, "SELECT tableowner FROM pg_tables WHERE tablename='notes';"
        )
        # A dump that is not one changes nothing.
        bad = raw_ssh(platform, alice, "services:restore", second, data=b"not a dump")
        assert bad.returncode == 1 and b" !     pg_restore failed" in bad.stderr, bad.stderr
        assert want in psql(
            platform,
            alice,
            second,
            "SELECT encode(convert_to(string_agg(body, '|' ORDER BY id), 'UTF8'), 'hex') FROM notes;",
        )
    finally:
        ok(platform.ssh(alice, "services:destroy", second, "--confirm", second))


def test_data_survives_a_restart(platform: Harness, alice: Key, pg: str) -> None:
    psql(
        platform,
        alice,
        pg,
        "CREATE TABLE IF NOT EXISTS kept (v text); INSERT INTO kept VALUES ('still here');",
    )
    out = ok(platform.ssh(alice, "services:restart", pg))
    assert "accepts connections" in out
    assert "still here" in psql(platform, alice, pg, "SELECT v FROM kept;")


def test_unlink_rolls_out_and_cuts_access(platform: Harness, alice: Key, app: str, pg: str) -> None:
    out = ok(platform.ssh(alice, "services:unlink", pg, "-a", app))
    assert f"done, {app}:v" in out
    config = json.loads(ok(platform.ssh(alice, "config", "-a", app, "--json")))
    assert "DATABASE_URL" not in config
    r = run(platform, alice, app, "python3", "-c", REACH, pg, "5432")
    assert "unreachable" in r
    net = svc_engine.link_network(str(platform.settings.state_dir), pg, app)
    assert not docker.from_env().networks.list(names=[net])
    refused(platform.ssh(alice, "services:unlink", pg, "-a", app), f"not linked to {app}")


def test_redis_link_ping_backup_restore(platform: Harness, alice: Key, app: str) -> None:
    name = unique("cache")
    ok(platform.ssh(alice, "services:create", "redis", name, timeout=300))
    second = unique("cache2")
    try:
        ok(platform.ssh(alice, "services:link", name, "-a", app, "--as", "CACHE_URL"))
        r = run(platform, alice, app, "python3", "-c", REDIS_PROBE, "CACHE_URL")
        assert r.strip().startswith("-NOAUTH") and r.strip().endswith("|+OK|+PONG|")
        for i, v in enumerate(ROWS):
            ok(
                platform.ssh(
                    alice, "services:connect", name, input=f"SET k{i} {json.dumps(v, ensure_ascii=False)}\n"
                )
            )
        dump = raw_ssh(platform, alice, "services:backup", name)
        assert dump.returncode == 0 and dump.stdout.startswith(b"REDIS"), dump.stderr
        ok(platform.ssh(alice, "services:create", "redis", second, timeout=300))
        r = raw_ssh(platform, alice, "services:restore", second, data=dump.stdout)
        assert r.returncode == 0, r.stderr
        bad = raw_ssh(platform, alice, "services:restore", second, data=b"garbage")
        assert bad.returncode == 1 and b"not a redis RDB file" in bad.stderr, bad.stderr
        assert b" !     the restore failed (exit status 3): the data is as it was" in bad.stderr
        ok(platform.ssh(alice, "services:restart", second))
        for i, v in enumerate(ROWS):
            got = raw_ssh(platform, alice, "services:connect", second, data=f"GET k{i}\n".encode())
            assert got.stdout == v.encode() + b"\n", (v, got)
        ok(platform.ssh(alice, "services:unlink", name, "-a", app))
    finally:
        platform.ssh(alice, "services:destroy", name, "--confirm", name)
        platform.ssh(alice, "services:destroy", second, "--confirm", second)


def test_link_and_unlink_under_load_fail_no_request(platform: Harness, alice: Key, pg: str) -> None:
    name = unique("svcload")
    assert platform.push(platform.checkout("hello", name), alice).returncode == 0
    platform.wait_steady(name)
    with Load(platform.settings.http_port, f"{name}.{platform.settings.domain}", workers=3) as traffic:
        ok(platform.ssh(alice, "services:link", pg, "-a", name))
        ok(platform.ssh(alice, "services:unlink", pg, "-a", name))
    assert traffic.result.sent > 0 and traffic.result.failed == 0, traffic.result.summary()
    ok(platform.ssh(alice, "apps:destroy", name, "--confirm", name))


def test_a_killed_service_is_restarted_and_data_survives_platform_down_up(
    platform: Harness, alice: Key, pg: str
) -> None:
    psql(
        platform,
        alice,
        pg,
        "CREATE TABLE IF NOT EXISTS kept (v text); INSERT INTO kept VALUES ('through down');",
    )
    c = docker.from_env().containers.get(svc_engine.container_name(str(platform.settings.state_dir), pg))
    os.kill(int(c.attrs["State"]["Pid"]), signal.SIGKILL)  # the container's init: the whole service dies
    deadline = time.monotonic() + 30
    while True:
        info = json.loads(ok(platform.ssh(alice, "services:info", pg, "--json")))
        if (
            info["restarts"] >= 1
            and info["status"] == "running"
            and "through down" in _kept(platform, alice, pg)
        ):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    s = platform.settings
    platform.stop_appliance()
    components.down(s, platform.out)
    components.up(s, platform.out)
    platform.start_appliance()
    assert "through down" in _kept(platform, alice, pg)


def _kept(platform: Harness, alice: Key, pg: str) -> str:
    r = platform.ssh(alice, "services:connect", pg, input="SELECT v FROM kept;")
    return r.stdout if r.returncode == 0 else ""


def test_scheduled_backups_rotate(platform: Harness, alice: Key, bob: Key, pg: str) -> None:
    ok(platform.ssh(alice, "services:backups:schedule", pg, "00:00", "--keep", "2"))
    refused(
        platform.ssh(alice, "services:backups:schedule", pg, "25:00", "--keep", "2"), "invalid time '25:00'"
    )
    refused(platform.ssh(bob, "services:backups", pg), "does not exist or is not yours")
    p = Platform.from_settings(platform.settings)
    day = 86400
    made = [backups.run_due(p, time.time() + k * day) for k in (1, 2, 3)]
    assert all(len(m) == 1 for m in made), made
    assert backups.run_due(p, time.time() + 3 * day) == []  # done for that day
    listed = json.loads(ok(platform.ssh(alice, "services:backups", pg, "--json")))
    assert [b["file"] for b in listed] == [made[2][0], made[1][0]]  # newest first, the oldest rotated out
    folder = backups.directory(p, pg)
    assert all((folder / b["file"]).read_bytes().startswith(b"PGDMP") for b in listed)
    assert all((folder / b["file"]).stat().st_mode & 0o777 == 0o600 for b in listed)
