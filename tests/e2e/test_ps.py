"""ps, scale, ps:restart, logs, run end to end: stock ssh against the real appliance, docker, nginx."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import docker
import pytest

from scheduler.docker import LABEL_PLATFORM
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key) -> str:
    """One app, deployed once (v2), then given a config var (v3); the tests share it."""
    name = unique("ps")
    work = platform.checkout("hello", name)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    r = platform.ssh(admin, "config:set", "--app", name, "GREETING=hi")
    assert r.returncode == 0, r.stderr
    return name


def runs(h: Harness, app: str) -> list[str]:
    """The app's one-off containers (listed tolerating ones removed while listing)."""
    found = docker.from_env().containers.list(
        all=True,
        ignore_removed=True,
        filters={"label": [f"{LABEL_PLATFORM}={h.settings.state_dir}", f"io.deis.app={app}"]},
    )
    return sorted(c.name for c in found if ".run." in c.name)


def endpoints(h: Harness, app: str) -> list[str]:
    conf = (h.settings.nginx_dir / "apps" / f"{app}.conf").read_text()
    return re.findall(r"server (127\.0\.0\.1:\d+) ", conf)


def ps_json(h: Harness, key: Key, app: str) -> list[dict]:
    r = h.ssh(key, "ps", "--app", app, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@dataclass
class Load:
    """A few threads GETting the app through nginx until stopped (or a bound is hit)."""

    h: Harness
    app: str
    threads: int = 4
    limit: int = 20000
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        for _ in range(self.limit):
            if self.stop.is_set():
                return
            try:
                status, body = self.h.get(self.app, "/", timeout=10)
                if status == 200 and body.startswith("hello"):
                    self.ok += 1
                else:
                    self.failed.append(f"{status} {body[:60]!r}")
            except OSError as exc:
                self.failed.append(repr(exc))

    @contextmanager
    def running(self) -> Iterator[Load]:
        workers = [threading.Thread(target=self._loop) for _ in range(self.threads)]
        for w in workers:
            w.start()
        try:
            time.sleep(0.3)
            yield self
            time.sleep(0.3)
        finally:
            self.stop.set()
            for w in workers:
                w.join(timeout=30)


def test_scale_up_and_down_with_zero_failed_requests(platform: Harness, admin: Key, app: str) -> None:
    assert platform.containers(app) == [f"{app}_v3.cmd.1"]
    with Load(platform, app).running() as load:
        up = platform.ssh(admin, "scale", "cmd=3", "--app", app)
        n_up = load.ok
    assert up.returncode == 0, up.stderr
    assert f"-----> Scaling {app}:v3 (cmd=3)" in up.stdout
    assert f"done, {app}:v3 runs cmd=3" in up.stdout
    assert platform.containers(app) == [f"{app}_v3.cmd.{n}" for n in (1, 2, 3)]
    assert len(endpoints(platform, app)) == 3
    assert load.failed == [] and n_up > 0, load.failed[:5]
    assert json.loads(platform.ssh(admin, "apps:info", app, "--json").stdout)["formation"] == {"cmd": 3}

    with Load(platform, app).running() as load:
        down = platform.ssh(admin, "ps:scale", "cmd=1", "--app", app)
    assert down.returncode == 0, down.stderr
    assert f"stopped {app}_v3.cmd.3, {app}_v3.cmd.2" in down.stdout
    assert platform.containers(app) == [f"{app}_v3.cmd.1"]
    assert len(endpoints(platform, app)) == 1
    assert load.failed == [] and load.ok > 0, load.failed[:5]
    print(f"\nscale 1->3: {n_up} requests, 3->1: {load.ok} requests, 0 failed")


def test_scale_refuses_unknown_types_and_bad_counts(platform: Harness, admin: Key, app: str) -> None:
    before = platform.containers(app)
    r = platform.ssh(admin, "scale", "web=2", "--app", app)
    assert r.returncode == 1
    assert r.stderr.rstrip().splitlines() == [f" !     {app} has no process type 'web'; it declares: cmd"]
    r = platform.ssh(admin, "scale", "cmd=two", "--app", app)
    assert r.returncode == 2 and "expected TYPE=N" in r.stderr
    assert platform.containers(app) == before


def test_ps_lists_containers_plain_and_json(platform: Harness, admin: Key, app: str) -> None:
    r = platform.ssh(admin, "ps", "--app", app)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"=== {app} Processes"
    assert re.fullmatch(rf"cmd\.1\s+running\s+v3\s+\d+[smhd]\S*\s+{app}_v3\.cmd\.1", lines[1]), lines
    (proc,) = ps_json(platform, admin, app)
    assert {k: proc[k] for k in ("process", "type", "num", "state", "release", "container")} == {
        "process": "cmd.1",
        "type": "cmd",
        "num": 1,
        "state": "running",
        "release": "v3",
        "container": f"{app}_v3.cmd.1",
    }
    assert len(proc["id"]) == 64 and proc["uptime"]


def test_ps_restart_keeps_serving_with_new_containers(platform: Harness, admin: Key, app: str) -> None:
    assert platform.ssh(admin, "scale", "cmd=2", "--app", app).returncode == 0
    before = {p["process"]: p["id"] for p in ps_json(platform, admin, app)}
    with Load(platform, app).running() as load:
        started = time.monotonic()
        r = platform.ssh(admin, "ps:restart", "--app", app)
        took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert f"-----> Restarting cmd.1, cmd.2 of {app}:v3" in r.stdout
    after = {p["process"]: p["id"] for p in ps_json(platform, admin, app)}
    assert sorted(after) == ["cmd.1", "cmd.2"]
    assert all(after[p] != before[p] for p in after)
    assert platform.containers(app) == [f"{app}_v3.cmd.1", f"{app}_v3.cmd.2"]  # no retiring leftovers
    assert load.failed == [] and load.ok > 0, load.failed[:5]
    print(f"\nps:restart of 2 containers: {took:.1f}s, {load.ok} requests, 0 failed")

    one = platform.ssh(admin, "ps:restart", "cmd.2", "--app", app)
    assert one.returncode == 0, one.stderr
    again = {p["process"]: p["id"] for p in ps_json(platform, admin, app)}
    assert again["cmd.1"] == after["cmd.1"] and again["cmd.2"] != after["cmd.2"]
    r = platform.ssh(admin, "ps:restart", "cmd.9", "--app", app)
    assert r.returncode == 1 and "runs no cmd.9" in r.stderr
    assert platform.ssh(admin, "scale", "cmd=1", "--app", app).returncode == 0


def test_logs_show_requests_and_platform_events(platform: Harness, admin: Key, app: str) -> None:
    path = f"/{unique('path')}"
    assert platform.get(app, path)[0] == 200
    time.sleep(0.5)
    r = platform.ssh(admin, "logs", "-n", "100000", "--app", app)  # past the load tests' requests
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"{app}[cmd.1]: GET {path}" in lines
    assert any(line.startswith(f"{app}[deis]: admin deployed ") for line in lines)
    configured = f"{app}[deis]: admin added GREETING: v3 deployed"
    # Ordered by time: the config change came before the request just made.
    assert lines.index(configured) < lines.index(f"{app}[cmd.1]: GET {path}")
    r = platform.ssh(admin, "logs", "-n", "1", "--type", "cmd", "--app", app)
    assert r.stdout.splitlines() == [f"{app}[cmd.1]: GET {path}"]


def appliance_threads(h: Harness) -> int:
    pid = h.appliance_pid()
    return len(os.listdir(f"/proc/{pid}/task"))


def test_logs_follow_picks_up_new_containers_and_ends_on_hangup(
    platform: Harness, admin: Key, app: str
) -> None:
    argv = [*platform.ssh_argv(admin), "git@127.0.0.1", "logs", "-f", "-n", "1", "--app", app]
    follower = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        time.sleep(1.5)
        r = platform.ssh(admin, "scale", "cmd=2", "--app", app)
        assert r.returncode == 0, r.stderr
        path = f"/{unique('follow')}"
        deadline = time.monotonic() + 30
        while f"{app}[cmd.2]: GET {path}\n" not in seen and time.monotonic() < deadline:
            platform.get(app, path)
            time.sleep(0.1)
        assert f"{app}[cmd.2]: GET {path}\n" in seen, seen[-10:]
        while f"{app}[deis]: admin scaled cmd=2\n" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)  # events are polled (every 0.5 s), container output is streamed
        assert f"{app}[deis]: admin scaled cmd=2\n" in seen, (seen[-10:], follower.poll())
        assert follower.poll() is None  # still following
        threads_following = appliance_threads(platform)  # the log collector follows cmd.2 too
    finally:
        follower.send_signal(signal.SIGKILL)  # the client goes away without a word
        follower.wait(timeout=10)
    # The server's side of the session ends too: its threads are gone.
    threads_after = threads_following + 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        threads_after = appliance_threads(platform)
        if threads_after <= threads_following:
            break
        time.sleep(0.2)
    assert threads_after <= threads_following, (threads_following, threads_after)
    assert platform.ssh(admin, "scale", "cmd=1", "--app", app).returncode == 0


def test_logs_follow_on_a_pty_ends_on_ctrl_c(platform: Harness, admin: Key, app: str) -> None:
    r = platform.ssh(admin, "logs", "-f", "-n", "1", "--app", app, input="\x03", tty=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"{app}[" in r.stdout


def test_run_returns_the_exit_status_and_sees_the_config(platform: Harness, admin: Key, app: str) -> None:
    r = platform.ssh(admin, "run", "--app", app, "--", "sh", "-c", "'exit 7'")
    assert r.returncode == 7, r.stderr
    r = platform.ssh(admin, "run", "--app", app, "env")
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["GREETING"] == "hi" and env["DEIS_APP"] == app and env["DEIS_RELEASE"] == "v3"
    assert env["DYNO"].startswith("run.")
    r = platform.ssh(admin, "run", "--app", app, "--", "sh", "-c", "'cat; echo done >&2'", input="piped in\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "piped in\n", "done\n")
    assert not runs(platform, app)


def test_run_under_a_pty_gets_the_terminal_size_and_its_changes(
    platform: Harness, admin: Key, app: str
) -> None:
    # ssh itself runs on a local pty of 33 rows x 101 columns, as a user's terminal would be.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    argv = [*platform.ssh_argv(admin), "-t", "git@127.0.0.1", "run", "--app", app, "--", "sh", "-c"]
    # docker 20.10 sizes the container's tty just after it started: give it a moment.
    script = "'tty; sleep 1; stty size; sleep 2; stty size; exit 3'"
    child = subprocess.Popen([*argv, script], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    resized = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not resized and b"33 101" in out:
            # The user resizes their terminal: ssh gets SIGWINCH and tells the server.
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            child.send_signal(signal.SIGWINCH)
            resized = True
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif child.poll() is not None:
            break
    os.close(master)
    assert child.wait(timeout=10) == 3, out
    text = out.decode("utf-8", "replace")
    assert "/dev/pts/" in text and "33 101" in text and "40 120" in text, text
    # ssh -tt without a local terminal: a pty still, the exit status still the command's.
    r = platform.ssh(
        admin, "run", "--app", app, "--", "sh", "-c", "'test -t 0 && echo on a tty; exit 5'", tty=True
    )
    assert r.returncode == 5 and "on a tty" in r.stdout, (r.stdout, r.stderr)
    assert not runs(platform, app)


def test_run_is_removed_when_the_client_hangs_up(platform: Harness, admin: Key, app: str) -> None:
    argv = [*platform.ssh_argv(admin), "git@127.0.0.1", "run", "--app", app, "--", "sleep", "300"]
    client = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not runs(platform, app) and time.monotonic() < deadline:
        time.sleep(0.2)
    (name,) = runs(platform, app)
    assert re.fullmatch(rf"{app}_v3\.run\.\d+", name)
    client.kill()
    client.wait(timeout=10)
    hung_up = time.monotonic()
    while runs(platform, app) and time.monotonic() < hung_up + 30:
        time.sleep(0.2)
    assert not runs(platform, app)
    print(f"\nrun container removed {time.monotonic() - hung_up:.1f}s after the client hung up")


@pytest.fixture(scope="module")
def procfile_app(platform: Harness, admin: Key) -> str:
    name = unique("procs")
    work = platform.checkout("hello", name)
    platform.commit_change(
        work,
        "Procfile",
        # web.3 cannot start: a scale that needs it must fail and change nothing.
        'web: test "$DYNO" != web.3 && exec python3 -u /app/app.py\n'
        "worker: trap 'exit 0' TERM; while true; do echo tick; sleep 0.5; done\n",
    )
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name


def test_procfile_types_scale_and_restart_without_touching_the_router(
    platform: Harness, admin: Key, procfile_app: str
) -> None:
    app = procfile_app
    assert platform.containers(app) == [f"{app}_v2.web.1"]
    routed = endpoints(platform, app)
    r = platform.ssh(admin, "scale", "cmd=1", "--app", app)
    assert r.returncode == 1 and "it declares: web, worker" in r.stderr
    r = platform.ssh(admin, "scale", "worker=2", "--app", app)
    assert r.returncode == 0, r.stderr
    assert "Switching the router" not in r.stdout
    assert platform.containers(app) == [f"{app}_v2.web.1", f"{app}_v2.worker.1", f"{app}_v2.worker.2"]
    assert endpoints(platform, app) == routed
    before = {p["process"]: p["id"] for p in ps_json(platform, admin, app)}
    r = platform.ssh(admin, "ps:restart", "worker", "--app", app)
    assert r.returncode == 0, r.stderr
    after = {p["process"]: p["id"] for p in ps_json(platform, admin, app)}
    assert after["web.1"] == before["web.1"]
    assert after["worker.1"] != before["worker.1"] and after["worker.2"] != before["worker.2"]
    time.sleep(1.2)
    r = platform.ssh(admin, "logs", "--type", "worker", "-n", "4", "--app", app)
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and {line.split(": ", 1)[1] for line in lines} == {"tick"}, lines
    assert {line.split(": ")[0] for line in lines} <= {f"{app}[worker.1]", f"{app}[worker.2]"}
    assert platform.get(app) == (200, "hello from v1\n")


def test_a_scale_whose_new_containers_fail_changes_nothing(
    platform: Harness, admin: Key, procfile_app: str
) -> None:
    app = procfile_app
    before, routed = platform.containers(app), endpoints(platform, app)
    formation = json.loads(platform.ssh(admin, "apps:info", app, "--json").stdout)["formation"]
    started = time.monotonic()
    r = platform.ssh(admin, "scale", "web=3", "--app", app)
    print(f"\nfailed scale took {time.monotonic() - started:.1f}s")
    assert r.returncode == 1
    assert f"{app}_v2.web.3 failed its health check" in r.stderr  # web.2 started, then was removed
    assert platform.containers(app) == before
    assert endpoints(platform, app) == routed
    assert json.loads(platform.ssh(admin, "apps:info", app, "--json").stdout)["formation"] == formation
    assert platform.get(app) == (200, "hello from v1\n")
