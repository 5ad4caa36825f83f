"""Hostile tenants against the platform's limits (issue 17): each test acts as an unprivileged user
and checks that the platform keeps serving everyone else and the attacker gets a one-line error."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

# The hello app, but /health never answers once /tmp/hang exists (it accepts, then waits forever).
HANGING_APP = """
import http.server, os, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and os.path.exists("/tmp/hang"):
            time.sleep(10**6)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")

http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""


def ok(r) -> None:  # type: ignore[no-untyped-def]
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def mallory(platform: Harness) -> Key:
    return platform.add_user("mallory")


def test_scale_is_capped_with_a_clear_message(platform: Harness, mallory: Key) -> None:
    app = unique("huge")
    ok(platform.push(platform.checkout("hello", app), mallory))
    before = platform.containers(app)
    r = platform.ssh(mallory, "scale", "cmd=99999999999", "--app", app)
    assert r.returncode == 1
    assert r.stderr.rstrip().splitlines() == [
        " !     cannot scale cmd to 99999999999: at most 100 containers per process type"
        " (the operator's DEIS_MAX_SCALE_PER_TYPE)"
    ]
    assert platform.containers(app) == before
    ok(platform.ssh(mallory, "apps:destroy", app, "--confirm", app))


def test_an_app_that_never_answers_its_probes_delays_no_other_app(
    platform: Harness, admin: Key, mallory: Key
) -> None:
    victim = unique("victim")
    ok(platform.push(platform.checkout("hello", victim), admin))
    hostile = unique("hang")
    work = platform.checkout("hello", hostile)
    (work / "app.py").write_text(HANGING_APP)
    checks = {"healthchecks": {"web": [{"path": "/health", "timeout": 86400, "attempts": 60, "wait": 0.5}]}}
    (work / "app.json").write_text(json.dumps(checks))
    platform.git(work, "add", "-A")
    platform.git(work, "commit", "-q", "-m", "hang on probes")
    ok(platform.push(work, mallory))
    ok(platform.ssh(mallory, "scale", "cmd=2", "--app", hostile))
    client = docker.from_env()
    try:
        client.containers.get(f"{hostile}_v2.cmd.1").exec_run(["touch", "/tmp/hang"])
        # The attacker makes the reconciler look at the hung app: one of its containers goes away.
        client.containers.get(f"{hostile}_v2.cmd.2").remove(force=True)
        time.sleep(2)  # the reconciler is probing the hung container by now
        client.containers.get(f"{victim}_v2.cmd.1").remove(force=True)
        killed = time.monotonic()
        while time.monotonic() - killed < 15:
            try:
                if client.containers.get(f"{victim}_v2.cmd.1").status == "running":
                    break
            except docker.errors.NotFound:
                pass
            time.sleep(0.05)
        replaced = time.monotonic() - killed
        platform.wait_for(victim, "hello from v1", timeout=15)
        served = time.monotonic() - killed
        print(f"\nkilled container replaced in {replaced:.2f}s, served again after {served:.2f}s")
        assert replaced < 5, f"replaced after {replaced:.1f}s"
    finally:
        ok(platform.ssh(mallory, "apps:destroy", hostile, "--confirm", hostile))
        ok(platform.ssh(admin, "apps:destroy", victim, "--confirm", victim))


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def test_a_highly_compressible_2gb_push_is_refused_and_the_appliance_stays_small(
    platform: Harness, mallory: Key
) -> None:
    app = unique("zeros")
    work = platform.checkout("hello", app)
    with (work / "zeros.bin").open("wb") as f:
        f.truncate(2 << 30)  # 2 GiB of zeros: a few MB once git packs it
    platform.git(work, "add", "-A", timeout=600)
    platform.git(work, "commit", "-q", "-m", "zeros")
    pid = platform.appliance_pid()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], _rss_kib(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = platform.push(work, mallory)
    finally:
        done.set()
        sampler.join()
    hwm = _rss_kib(pid, "VmHWM") / 1024
    print(f"\nappliance RSS peak during the push: {peak[0] / 1024:.0f} MiB (VmHWM since start {hwm:.0f} MiB)")
    assert r.returncode != 0
    assert "is too large: over 1.0 GiB unpacked (at least" in r.stderr, r.stderr
    assert "push rejected: nothing changed" in r.stderr
    assert platform.containers(app) == []
    assert peak[0] < 300 * 1024
    ok(platform.ssh(mallory, "apps:destroy", app, "--confirm", app))


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except OSError as exc:
    print("refused:", type(exc).__name__)
"""

FORK_BOMB = """
import os, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
    print("unbounded", n)
except OSError as exc:
    print("bounded after", n, "forks:", exc.strerror)
"""


def _ip(container: str) -> str:
    attrs = docker.from_env().containers.get(container).attrs
    (net,) = attrs["NetworkSettings"]["Networks"].values()
    return str(net["IPAddress"])


@pytest.fixture(scope="module")
def two_apps(platform: Harness, admin: Key, mallory: Key):  # type: ignore[no-untyped-def]
    victim = unique("vict")
    ok(platform.push(platform.checkout("hello", victim), admin))
    ok(platform.ssh(admin, "config:set", "--app", victim, "SECRET=victim-secret-8c1f"))
    attacker = unique("atk")
    ok(platform.push(platform.checkout("hello", attacker), mallory))
    yield victim, attacker
    ok(platform.ssh(mallory, "apps:destroy", attacker, "--confirm", attacker))
    ok(platform.ssh(admin, "apps:destroy", victim, "--confirm", victim))


def test_a_one_off_cannot_connect_to_another_apps_container(
    platform: Harness, mallory: Key, two_apps
) -> None:  # type: ignore[no-untyped-def]
    victim, attacker = two_apps
    ip = _ip(f"{victim}_v3.cmd.1")
    r = platform.ssh(mallory, "run", "--app", attacker, "--", "python3", "-c", f"'{CONNECT}'", ip, "5000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:"), r.stdout
    status, body = platform.get(victim)  # through the router, the victim still answers everyone
    assert status == 200 and "hello from v1" in body
    # The attacker's own containers are confined the same way.
    attrs = docker.from_env().containers.get(f"{attacker}_v2.cmd.1").attrs["HostConfig"]
    assert "NET_RAW" in attrs["CapDrop"] and attrs["SecurityOpt"] == ["no-new-privileges"]
    assert attrs["PidsLimit"] == platform.settings.default_pids_limit
    assert attrs["Memory"] == platform.settings.default_memory


def test_a_fork_bomb_in_a_one_off_is_bounded(platform: Harness, mallory: Key, two_apps) -> None:  # type: ignore[no-untyped-def]
    _, attacker = two_apps
    started = time.monotonic()
    r = platform.ssh(mallory, "run", "--app", attacker, "--", "python3", "-c", f"'{FORK_BOMB}'", timeout=120)
    took = time.monotonic() - started
    print(f"\nfork bomb: {r.stdout.strip()} ({took:.1f}s)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("bounded after"), r.stdout
    assert int(r.stdout.split()[2]) < platform.settings.default_pids_limit
    started = time.monotonic()
    ok(platform.ssh(mallory, "apps:list"))
    assert time.monotonic() - started < 10


def test_config_values_never_reach_a_command_line(platform: Harness, admin: Key, two_apps) -> None:  # type: ignore[no-untyped-def]
    victim, _ = two_apps
    found: list[str] = []
    done = threading.Event()

    def scan() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    if b"victim-secret-8c1f" in cmdline.read_bytes():
                        found.append(str(cmdline))
            time.sleep(0.02)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        r = platform.ssh(admin, "run", "--app", victim, "--", "sh", "-c", "'sleep 2; echo $SECRET'")
    finally:
        done.set()
        scanner.join()
    assert r.returncode == 0 and r.stdout == "victim-secret-8c1f\n", r.stdout + r.stderr
    assert found == []


def test_fifty_followers_from_one_user_lock_nobody_else_out(
    platform: Harness, admin: Key, mallory: Key
) -> None:
    app = unique("chatty")
    ok(platform.push(platform.checkout("hello", app), mallory))
    argv = [*platform.ssh_argv(mallory), "git@127.0.0.1", "logs", "-f", "--app", app]
    followers = [
        subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(50)
    ]
    try:
        time.sleep(3)
        other = unique("busy")
        started = time.monotonic()
        r = platform.push(platform.checkout("hello", other), admin)
        took = time.monotonic() - started
        assert r.returncode == 0, r.stderr
        started = time.monotonic()
        ok(platform.ssh(admin, "apps:list"))
        listed = time.monotonic() - started
        refused = [p for p in followers if p.poll() is not None]
        still = [p for p in followers if p.poll() is None]
        print(f"\n50 followers: {len(still)} following, {len(refused)} refused")
        print(f"meanwhile another user's push took {took:.1f}s, apps:list {listed:.2f}s")
        assert len(still) == platform.settings.max_sessions_per_user
        for p in refused:
            _, err = p.communicate()
            assert p.returncode == 1
            most = platform.settings.max_sessions_per_user
            assert err.splitlines() == [
                f" !     too many sessions: mallory has {most} open, the most one user may have"
                " (the operator's DEIS_MAX_SESSIONS_PER_USER); close one and try again"
            ]
        assert listed < 5
        ok(platform.ssh(admin, "apps:destroy", other, "--confirm", other))
    finally:
        for p in followers:
            if p.poll() is None:
                p.terminate()
            with contextlib.suppress(ValueError):  # read already (a refused one)
                p.communicate(timeout=30)
    deadline = time.monotonic() + 10  # the followers' sessions close: mallory may work again
    while time.monotonic() < deadline:
        r = platform.ssh(mallory, "apps:info", app)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    ok(r)
    ok(platform.ssh(mallory, "apps:destroy", app, "--confirm", app))


def test_destroying_an_app_keeps_the_images_other_apps_deployed(platform: Harness, admin: Key) -> None:
    source_app, user_app = unique("src"), unique("user")
    ok(platform.push(platform.checkout("hello", source_app), admin))
    (build,) = json.loads(platform.ssh(admin, "builds", "--app", source_app, "--json").stdout)
    ok(platform.ssh(admin, "apps:create", user_app))
    ok(platform.ssh(admin, "builds:create", build["image"], "--app", user_app))
    r = platform.ssh(admin, "apps:destroy", source_app, "--confirm", source_app)
    ok(r)
    assert f"kept, other apps deployed them: {build['image']}" in r.stdout
    # The other app still runs, and can start again from the registry (its local image is gone).
    ok(platform.ssh(admin, "ps:restart", "--app", user_app))
    assert platform.get(user_app) == (200, "hello from v1\n")
    ok(platform.ssh(admin, "apps:destroy", user_app, "--confirm", user_app))


def test_small_holes_domains_keys_and_the_last_key(platform: Harness, admin: Key) -> None:
    app = unique("small")
    ok(platform.ssh(admin, "apps:create", app))
    for ip in ("10.0.0.1", "127.1"):
        r = platform.ssh(admin, "domains:add", ip, "--app", app)
        assert r.returncode == 1
        assert r.stderr.rstrip().splitlines() == [
            f" !     invalid domain {ip!r}: an IP address is not a domain; use a hostname"
        ]
    eve = platform.add_user("eve")
    spare = platform.key("eve-spare")
    hostile = " ".join(spare.public.split()[:2]) + " \x1b[2J\x1b]0;pwned\x07laptop\n"
    ok(platform.ssh(eve, "keys:add", input=hostile))
    listing = platform.ssh(eve, "keys:list").stdout
    assert "\x1b" not in listing and "\\x1b[2J\\x1b]0;pwned\\x07laptop" in listing
    (laptop,) = [k for k in json.loads(platform.ssh(eve, "keys:list", "--json").stdout) if k["name"] != "eve"]
    assert laptop["name"] == "\\x1b[2J\\x1b]0;pwned\\x07laptop"
    ok(platform.ssh(admin, "keys:remove", "--user", "eve", laptop["fingerprint"]))
    # Two removals at once, each session removing the key the other logged in with: never both.
    for n in range(3):
        a, b = platform.key(f"eve-a{n}"), platform.key(f"eve-b{n}")
        for k in (a, b):
            ok(platform.ssh(admin, "keys:add", "--user", "eve", input=k.public))
        for k in json.loads(platform.ssh(admin, "keys:list", "--all", "--json").stdout):
            if k["user"] == "eve" and k["name"] not in (a.name, b.name):
                ok(platform.ssh(admin, "keys:remove", "--user", "eve", k["fingerprint"]))
        both = [
            subprocess.Popen(
                [*platform.ssh_argv(me), "git@127.0.0.1", "keys:remove", other.name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for me, other in ((a, b), (b, a))
        ]
        errors = [p.communicate(timeout=60)[1] for p in both]
        codes = sorted(p.returncode for p in both)
        # The loser is refused (its key is the last one) or, if it came later, cannot log in.
        assert codes[0] == 0 and codes[1] in (1, 255), errors
        keys = json.loads(platform.ssh(admin, "keys:list", "--all", "--json").stdout)
        assert len([k for k in keys if k["user"] == "eve"]) == 1, keys
    ok(platform.ssh(admin, "apps:destroy", app, "--confirm", app))


def closed_by_server(s) -> bool:  # type: ignore[no-untyped-def]
    s.settimeout(0.05)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False  # still open, waiting for us to authenticate
    except ConnectionResetError:
        pass
    return True


def test_connections_that_never_authenticate_are_capped(platform: Harness, admin: Key) -> None:
    import socket

    cap = platform.settings.max_preauth_connections
    held: list[socket.socket] = []
    try:
        for _ in range(cap):
            s = socket.create_connection(("127.0.0.1", platform.settings.ssh_port), timeout=5)
            s.recv(256)  # the server's banner: it counts this one now
            held.append(s)
        extra = socket.create_connection(("127.0.0.1", platform.settings.ssh_port), timeout=5)
        with extra:
            extra.settimeout(5)
            started = time.monotonic()
            while extra.recv(256):  # its banner, maybe; then the end: too many are still authenticating
                pass
            assert time.monotonic() - started < 5
        # They all come from one address: another address's login takes the oldest one's slot.
        argv = [*platform.ssh_argv(admin), "-o", "BindAddress=127.0.0.2", "git@127.0.0.1", "apps:list"]
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False
        )
        ok(r)
        evicted = sum(closed_by_server(s) for s in held)
        assert evicted == 1, evicted
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10  # once they are gone, logins work again
    while True:
        r = platform.ssh(admin, "apps:list")
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    ok(r)
