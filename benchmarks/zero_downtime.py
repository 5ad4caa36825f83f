"""Steady HTTP load through nginx (127.0.0.1 only, bounded) at an app while it, in turn: pushes new
code, config:set, scales 1->4, scales 4->1, ps:restart, rolls back, pushes a release that fails its
health check, and has one of two containers killed with SIGKILL.

    python benchmarks/zero_downtime.py [--workers 4]

Per scenario: requests sent, failed (connection errors or non-2xx), retried (an idle keep-alive
connection closed by an nginx reload, re-sent as browsers do), p50/p99 latency, duration.
Target: 0 failed in every scenario but the kill, where only requests in flight on the killed
container may fail, and the router drops it within 5 s. Starts its own platform (tests.harness).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from releaser.store import Store
from tests.harness import Harness, unique
from tests.load import Load, Result


def scenario(h: Harness, app: str, workers: int, action: Callable[[], object]) -> tuple[Result, object]:
    with Load(h.settings.http_port, f"{app}.{h.settings.domain}", workers=workers) as load:
        time.sleep(0.5)
        outcome = action()
        time.sleep(1.0)
    return load.result, outcome


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    rows: list[tuple[str, Result, str]] = []
    with tempfile.TemporaryDirectory(prefix="deis-zdt-") as tmp:
        h = Harness(Path(tmp))
        h.up()
        try:
            key = h.add_user("bench", admin=True)
            app = unique("zdt")
            work = h.checkout("hello", app)
            assert h.push(work, key).returncode == 0

            def ssh(*cmd: str) -> str:
                r = h.ssh(key, *cmd, "--app", app)
                return "ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[-120:]}"

            def push_change() -> str:
                h.commit_change(work, "message.txt", "v2 content\n")
                r = h.push(work, key)
                return "ok" if r.returncode == 0 else "push failed"

            def failing_push() -> str:
                (work / "Dockerfile").write_text('FROM deis/stack:bookworm\nCMD ["sleep", "600"]\n')
                h.git(work, "commit", "-qam", "never healthy")
                r = h.push(work, key)
                h.git(work, "reset", "-q", "--hard", "HEAD~1")
                return "rejected as expected" if r.returncode != 0 else "ACCEPTED?"

            steps: list[tuple[str, Callable[[], object]]] = [
                ("git push (new code)", push_change),
                ("config:set", lambda: ssh("config:set", "GREETING=hello")),
                ("scale cmd 1->4", lambda: ssh("scale", "cmd=4")),
                ("scale cmd 4->1", lambda: ssh("scale", "cmd=1")),
                ("ps:restart", lambda: ssh("ps:restart")),
                ("releases:rollback", lambda: ssh("releases:rollback")),
                ("push failing health check", failing_push),
            ]
            ssh("config:set", "HEALTHCHECK_TIMEOUT=3")
            for label, action in steps:
                result, outcome = scenario(h, app, args.workers, action)
                rows.append((label, result, str(outcome)))

            # Kill -9 one of two containers; measure how long until the router stops sending to it.
            ssh("scale", "cmd=2")
            store = Store.of(h.settings)
            client = docker.from_env()
            victim = client.containers.get(h.containers(app)[0])
            port = victim.attrs["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"]

            def kill() -> str:
                began = time.monotonic()
                victim.kill(signal="SIGKILL")
                while time.monotonic() - began < 10:
                    routes = store.get(f"apps/{app}/routes") or []
                    if all(not r.endswith(f":{port}") for r in routes):
                        return f"router dropped it after {time.monotonic() - began:.2f}s"
                    time.sleep(0.02)
                return "router still lists it after 10s (restarted in place?)"

            result, outcome = scenario(h, app, args.workers, kill)
            rows.append(("kill -9 one of two containers", result, str(outcome)))
        finally:
            h.down()
    header = f"{'scenario':32} {'sent':>6} {'failed':>6} {'retried':>7} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"{header} {'secs':>5}  outcome")
    for label, r, outcome in rows:
        p50 = sorted(r.latencies)[len(r.latencies) // 2] * 1000 if r.latencies else 0
        print(
            f"{label:32} {r.sent:6d} {r.failed:6d} {r.retried:7d} {p50:7.1f} {r.pct(0.99) * 1000:7.1f} "
            f"{r.duration:5.1f}  {outcome}"
        )


if __name__ == "__main__":
    main()
