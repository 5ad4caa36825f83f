"""metrics end to end: what a test sent through the real router is what `metrics` counts (a 5xx route,
slow requests in the right percentile), kept across an appliance restart, in Prometheus' format too,
and shown only to the app's owner, collaborators and admins. Stock ssh, a real container."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

APP = """import http.server, os, time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.3)
        status = 500 if self.path == "/fail" else 200
        body = b"metrics\\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""


def metrics(h: Harness, key: Key, app: str, *args: str) -> dict:
    r = h.ssh(key, "metrics", "--app", app, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for_requests(h: Harness, key: Key, app: str, n: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = metrics(h, key, app)
        if data["requests"] >= n or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key) -> str:
    name = unique("metrics")
    work = platform.checkout("hello", name)
    platform.commit_change(work, "app.py", APP)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    yield name
    assert platform.ssh(admin, "apps:destroy", name, "--confirm", name).returncode == 0
    assert not (platform.settings.metrics_dir / name).exists()


def test_metrics_count_what_was_sent(platform: Harness, admin: Key, alice: Key, app: str) -> None:
    for path, times, status in (("/", 40, 200), ("/fail", 5, 500), ("/slow", 5, 200)):
        for _ in range(times):
            assert platform.get(app, path)[0] == status
    data = wait_for_requests(platform, admin, app, 50)
    assert data["requests"] == 50, data
    assert data["status"] == {"1xx": 0, "2xx": 45, "3xx": 0, "4xx": 0, "5xx": 5}
    assert data["p50_ms"] < 100 and 300 <= data["p99_ms"] < 340 and 300 <= data["p95_ms"] < 340
    assert data["types"].keys() == {"cmd"} and data["types"]["cmd"]["requests"] == 50  # a Dockerfile app
    assert {"path": "/", "requests": 40} in data["top_paths"]
    assert data["bytes"] > 50 * len("metrics\n")
    (web,) = data["containers"]
    assert web["name"] == "cmd.1" and web["memory"] > 0 and web["cpu"] is not None

    text = platform.ssh(admin, "metrics", "--app", app, "--prometheus")
    assert text.returncode == 0, text.stderr
    assert f'deis_requests_total{{app="{app}",type="cmd",status="2xx"}} 45' in text.stdout
    assert f'deis_requests_total{{app="{app}",type="cmd",status="5xx"}} 5' in text.stdout
    assert f'deis_request_duration_seconds_count{{app="{app}",type="cmd"}} 50' in text.stdout

    plain = platform.ssh(admin, "metrics", "--app", app)  # piped: plain columns
    assert plain.returncode == 0 and "=== " + app + " requests" in plain.stdout
    # a stranger sees nothing of it, not even that it exists
    r = platform.ssh(alice, "metrics", "--app", app)
    assert r.returncode == 1 and "REQUESTS" not in r.stdout
    assert app not in platform.ssh(alice, "metrics", "--prometheus").stdout
    r = platform.ssh(admin, "metrics", "--app", app, "--since", "30d")
    assert r.returncode == 1 and "kept 7 days" in r.stderr


def test_metrics_survive_an_appliance_restart(platform: Harness, admin: Key, app: str) -> None:
    before = wait_for_requests(platform, admin, app, 1)["requests"]
    for _ in range(10):
        assert platform.get(app, "/")[0] == 200
    platform.stop_appliance()  # within a flush of the requests
    for _ in range(10):  # while the appliance is down: the router logs them, they count later
        assert platform.get(app, "/")[0] == 200
    platform.start_appliance()
    data = wait_for_requests(platform, admin, app, before + 20)
    assert data["requests"] == before + 20, data  # none lost, none twice
