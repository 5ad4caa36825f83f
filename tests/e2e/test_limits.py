"""Hostile tenants against the platform's limits (issue 17): each test acts as an unprivileged user
and checks that the platform keeps serving everyone else and the attacker gets a one-line error."""

from __future__ import annotations

import json
import time

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
    client = docker.from_env()
    try:
        client.containers.get(f"{hostile}_v2.cmd.1").exec_run(["touch", "/tmp/hang"])
        time.sleep(3)  # the reconciler is probing the hung app by now
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
