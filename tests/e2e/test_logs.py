"""logs end to end: the log store keeps what containers wrote after they are gone (redeploys, crash
loops, appliance restarts), stays within its bounds under a container printing as fast as it can,
and `logs -f` shows each line once, within a second, across a deploy. Stock ssh, real containers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from tests.drainservers import LogplexServer, SyslogServer, server_context
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

PROCFILE = (
    "web: exec python3 -u /app/app.py\n"
    'crash: echo "crash $(date +%s%N)"; exit 3\n'
    "counter: trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"count $i\"; sleep 0.05; done\n"
    "spew: exec yes 'spew spew spew spew spew spew spew spew spew spew spew spew'\n"
)


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key) -> str:
    name = unique("logs")
    work = platform.checkout("hello", name)
    platform.commit_change(work, "Procfile", PROCFILE)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name


def logs(h: Harness, key: Key, app: str, *args: str) -> list[str]:
    r = h.ssh(key, "logs", "--app", app, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def wait_for(check, timeout: float = 20.0, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def restarts(h: Harness, app: str, process: str) -> int:
    c = docker.from_env().containers.get(f"{app}_v{version(h, app)}.{process}")
    return int(c.attrs["RestartCount"])


def version(h: Harness, app: str) -> int:
    names = [n for n in h.containers(app) if ".web." in n]
    return max(int(n.split("_v")[1].split(".")[0]) for n in names)


def test_a_retired_containers_lines_are_kept_after_a_redeploy(
    platform: Harness, admin: Key, app: str
) -> None:
    path = f"/{unique('before')}"
    assert platform.get(app, path)[0] == 200
    old = version(platform, app)
    assert wait_for(lambda: logs(platform, admin, app, "--grep", path))
    r = platform.ssh(admin, "config:set", "--app", app, f"ROUND={path}")
    assert r.returncode == 0, r.stderr
    assert not [n for n in platform.containers(app) if f"_v{old}." in n]  # retired
    shown = logs(platform, admin, app, "--release", f"v{old}", "--grep", path)
    assert shown == [f"{app}[web.1]: GET {path}"]
    raw = logs(platform, admin, app, "--grep", path, "--json")
    (entry,) = [json.loads(x) for x in raw]
    assert (entry["source"], entry["release"], entry["text"]) == ("web.1", f"v{old}", f"GET {path}")
    assert abs(entry["time"] - time.time()) < 120
    # The build was kept too, with the platform's events; filters combine.
    assert any("Building" in x for x in logs(platform, admin, app, "--source", "build", "-n", "1000"))
    assert logs(platform, admin, app, "--source", "deis", "--since", "1h", "-n", "1")[0].startswith(
        f"{app}[deis]"
    )
    r = platform.ssh(admin, "logs", "--app", app, "--since", "yesterday")
    assert r.returncode != 0 and "duration" in r.stderr


def test_a_crash_loops_last_lines_are_kept(platform: Harness, admin: Key, app: str) -> None:
    assert platform.ssh(admin, "scale", "crash=1", "--app", app).returncode == 0
    assert wait_for(lambda: restarts(platform, app, "crash.1") >= 3, timeout=30)
    c = docker.from_env().containers.get(f"{app}_v{version(platform, app)}.crash.1")
    engine = [f"{app}[crash.1]: {x}" for x in c.logs().decode().splitlines()]
    assert platform.ssh(admin, "scale", "crash=0", "--app", app).returncode == 0
    assert not [n for n in platform.containers(app) if ".crash." in n]
    lines = logs(platform, admin, app, "--source", "crash.1", "-n", "1000")
    assert len(engine) >= 3 and lines[: len(engine)] == engine, (engine, lines)  # every run's line
    assert len(set(lines)) == len(lines), lines  # none twice
    assert all(x.startswith(f"{app}[crash.1]: crash ") for x in lines)


def test_one_offs_keep_their_status_and_their_output_and_leave_no_container(
    platform: Harness, admin: Key, app: str
) -> None:
    for i in range(5):  # short ones, back to back: the engine's removal raced them when auto-removed
        marker = unique("oneoff")
        r = platform.ssh(admin, "run", "--app", app, "--", "sh", "-c", f"'echo {marker}; exit {3 + i}'")
        assert (r.returncode, r.stdout) == (3 + i, f"{marker}\n"), (r.returncode, r.stdout, r.stderr)
        kept = logs(platform, admin, app, "--type", "run", "--grep", marker, "-n", "100")
        assert [x.split(": ", 1)[1] for x in kept] == [marker], kept
    assert not [n for n in platform.containers(app) if ".run." in n]


@contextmanager
def following(h: Harness, key: Key, app: str, *args: str) -> Iterator[list[tuple[float, str]]]:
    argv = [*h.ssh_argv(key), "git@127.0.0.1", "logs", "-f", "--app", app, *args]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    seen: list[tuple[float, str]] = []

    def read() -> None:
        for line in iter(proc.stdout.readline, ""):  # type: ignore[union-attr]
            seen.append((time.monotonic(), line.rstrip("\n")))

    threading.Thread(target=read, daemon=True).start()
    try:
        yield seen
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_follow_sees_a_line_within_a_second_and_nothing_twice_across_a_deploy(
    platform: Harness, admin: Key, app: str
) -> None:
    mark = unique("follow")
    with following(platform, admin, app, "-n", "1", "--grep", mark) as seen:
        time.sleep(1.5)
        sent = time.monotonic()
        assert platform.get(app, f"/{mark}-first")[0] == 200
        assert wait_for(lambda: any(x.endswith(f"{mark}-first") for _, x in seen), timeout=5)
        latency = next(t for t, x in seen if x.endswith(f"{mark}-first")) - sent
        print(f"\nlogs -f saw a new line after {latency * 1000:.0f} ms")
        assert latency < 1.0
        deploy = threading.Thread(
            target=lambda: platform.ssh(admin, "config:set", "--app", app, f"FOLLOW={mark}"), daemon=True
        )
        deploy.start()
        served = []
        k = 0
        while deploy.is_alive() or k < 10:
            k += 1
            if platform.get(app, f"/{mark}-{k}")[0] == 200:
                served.append(f"{app}[web.1]: GET /{mark}-{k}")
            time.sleep(0.05)
        wait_for(lambda: sum(1 for _, x in seen if x in served) >= len(served), timeout=10)
        time.sleep(1.0)
    shown = [x for _, x in seen if f"{mark}-first" not in x]
    assert shown == served  # every request once, in order, the old container's and the new one's


def test_an_appliance_restart_misses_and_repeats_nothing(platform: Harness, admin: Key, app: str) -> None:
    assert platform.ssh(admin, "scale", "counter=1", "--app", app).returncode == 0
    time.sleep(1.0)
    platform.stop_appliance()
    time.sleep(1.0)  # the counter goes on meanwhile
    platform.start_appliance()
    assert wait_for(lambda: platform.ssh(admin, "apps").returncode == 0, timeout=30)
    time.sleep(1.0)
    assert platform.ssh(admin, "scale", "counter=0", "--app", app).returncode == 0
    lines = logs(platform, admin, app, "--source", "counter.1", "-n", "100000")
    counts = [int(x.rsplit(" ", 1)[1]) for x in lines]
    assert counts == list(range(1, len(counts) + 1)), counts  # no gap, nothing twice
    assert len(counts) > 40


def appliance_rss(h: Harness) -> int:
    pid = h.appliance_pid()
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmRSS:"))


def test_the_bounds_hold_under_a_container_printing_as_fast_as_it_can(
    platform: Harness, admin: Key, app: str
) -> None:
    other = unique("calm")
    work = platform.checkout("hello", other)
    assert platform.ssh(admin, "scale", "spew=1", "--app", app).returncode == 0
    try:
        started = time.monotonic()
        r = platform.push(work, admin)  # another app deploys meanwhile
        took = time.monotonic() - started
        assert r.returncode == 0, r.stderr
        assert platform.get(other)[0] == 200
        path = f"/{unique('calm')}"
        assert platform.get(other, path)[0] == 200
        assert wait_for(lambda: logs(platform, admin, other, "--grep", path), timeout=5)
        time.sleep(max(0.0, 8 - took))
        rss = appliance_rss(platform)
    finally:
        assert platform.ssh(admin, "scale", "spew=0", "--app", app).returncode == 0
    print(f"\npush of another app while one spews: {took:.1f}s; appliance RSS {rss / 2**20:.0f} MiB")
    store = platform.settings.logs_dir / app
    files = [store / n for n in os.listdir(store) if n.endswith(".jsonl")]
    kept = sum(f.read_bytes().count(b"\n") for f in files)
    size = sum(f.stat().st_size for f in files)
    print(f"kept {kept} lines, {size} bytes")
    assert kept <= platform.settings.log_lines and size <= platform.settings.log_bytes
    assert kept >= platform.settings.log_lines * 3 // 4
    assert rss < 400 * 2**20
    lines = logs(platform, admin, app, "-n", "5", "--source", "spew.1")
    assert len(lines) == 5
    assert platform.ssh(admin, "apps:destroy", other, "--confirm", other).returncode == 0
    assert not (platform.settings.logs_dir / other).exists()


def drains_json(h: Harness, key: Key, app: str) -> list[dict]:
    r = h.ssh(key, "drains", "--app", app, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_syslog_drain_gets_the_lines_in_order_with_their_source(
    platform: Harness, admin: Key, app: str
) -> None:
    server = SyslogServer()
    url = f"syslog://127.0.0.1:{server.port}"
    try:
        r = platform.ssh(admin, "drains:add", url, "--app", app)
        assert r.returncode == 0, r.stderr
        mark = unique("drain")
        for k in range(20):
            assert platform.get(app, f"/{mark}-{k}")[0] == 200
        assert wait_for(lambda: sum(mark in m for m in server.messages) >= 20, timeout=10)
        got = [m for m in server.messages if mark in m]
        fields = [m.split(" ", 7) for m in got]
        assert [f[7] for f in fields] == [f"GET /{mark}-{k}" for k in range(20)]
        assert {(f[0], f[2], f[3], f[4]) for f in fields} == {("<14>1", "deis", app, "web.1")}
        (d,) = drains_json(platform, admin, app)
        assert d["url"] == url and d["delivered"] >= 20 and d["dropped"] == 0
        assert platform.ssh(admin, "drains:remove", url, "--app", app).returncode == 0
        assert drains_json(platform, admin, app) == []
    finally:
        server.close()


def test_a_dead_drain_blocks_nothing_and_counts_what_it_could_not_deliver(
    platform: Harness, admin: Key, app: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"syslog://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    assert platform.ssh(admin, "drains:add", dead, "--app", app).returncode == 0
    try:
        mark = unique("dead")
        for k in range(5):
            assert platform.get(app, f"/{mark}-{k}")[0] == 200
        assert wait_for(lambda: len(logs(platform, admin, app, "--grep", mark)) == 5, timeout=5)
        (d,) = drains_json(platform, admin, app)
        assert d["delivered"] == 0 and d["queued"] + d["dropped"] >= 5 and d["error"], d
    finally:
        assert platform.ssh(admin, "drains:remove", dead, "--app", app).returncode == 0
    for bad, message in [
        ("ftp://logs.example.com", "unsupported drain"),
        ("syslog://nohost", "expected syslog://HOST:PORT"),
        (f"syslog://127.0.0.1:{platform.settings.etcd_port}", "platform's own port"),
    ]:
        r = platform.ssh(admin, "drains:add", bad, "--app", app)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    r = platform.ssh(admin, "drains:remove", dead, "--app", app)
    assert r.returncode == 1 and "no drain" in r.stderr
    assert drains_json(platform, admin, app) == []


@pytest.mark.parametrize("kind", ["syslog+tls", "https"])
def test_a_tls_drain_verifies_the_server_and_gets_the_lines_in_order(
    platform: Harness, admin: Key, app: str, kind: str, tmp_path: Path
) -> None:
    """syslog over TLS and HTTPS (logplex batches): the server's certificate is checked against the
    operator's drain CA bundle (the harness's), the lines arrive in order with their source."""
    context = server_context(platform.drain_ca, tmp_path)
    server: SyslogServer | LogplexServer
    if kind == "https":
        server = LogplexServer(context)
        url = f"https://drain:s3cr%40t@localhost:{server.port}/ingest?app={app}"
    else:
        server = SyslogServer(context)
        url = f"syslog+tls://localhost:{server.port}"
    try:
        r = platform.ssh(admin, "drains:add", url, "--app", app)
        assert r.returncode == 0, r.stderr
        assert "s3cr" not in r.stderr  # the password is not echoed (events are read by collaborators)
        mark = unique("tls")
        for k in range(20):
            assert platform.get(app, f"/{mark}-{k}")[0] == 200
        assert wait_for(lambda: sum(mark in m for m in server.messages) >= 20, timeout=10)
        fields = [m.split(" ", 7) for m in server.messages if mark in m]
        assert [f[7] for f in fields] == [f"GET /{mark}-{k}" for k in range(20)]
        assert {(f[0], f[3], f[4]) for f in fields} == {("<14>1", app, "web.1")}
        if isinstance(server, LogplexServer):
            path, headers, _ = server.posts[-1]
            assert path == f"/ingest?app={app}"
            assert headers["Content-Type"] == "application/logplex-1"
            assert headers["Authorization"] == "Basic ZHJhaW46czNjckB0"  # drain:s3cr@t
            assert int(headers["Logplex-Msg-Count"]) == len(server.posts[-1][2])
        assert "s3cr" not in "\n".join(logs(platform, admin, app, "--source", "deis"))
        (d,) = drains_json(platform, admin, app)
        assert d["delivered"] >= 20 and d["dropped"] == 0, d
    finally:
        assert platform.ssh(admin, "drains:remove", url, "--app", app).returncode == 0
        server.close()
