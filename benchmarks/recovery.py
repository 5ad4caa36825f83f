"""How fast the appliance's container comes back, with an app under steady load through the router
(127.0.0.1 only, bounded): SIGKILL of its process (the engine restarts it), `docker restart` (SIGTERM,
its sessions end, start), a handover to other code (what `deis up` from a newer checkout does), and
the router's handover to a container of another spec (a remade router image).

    python benchmarks/recovery.py [--runs 5]

Per scenario: seconds until it listens again and until an SSH command is answered (median and
longest), and the requests the app failed meanwhile. Baseline, same run: an SSH command answered by
an appliance at rest. Target: back within 5 s, 0 failed. Starts its own platform (tests.harness).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from appliance import components, handover
from builders import appliance_image
from gitserver.admin import appliance_service
from tests.harness import Harness, Key, unique
from tests.load import Load


def command_answered(h: Harness, key: Key, began: float) -> float:
    while h.ssh(key, "apps:list", timeout=30).returncode != 0:
        time.sleep(0.05)
    return time.monotonic() - began


def kill(h: Harness) -> None:
    h.settings.appliance_ready.unlink(missing_ok=True)
    os.kill(h.appliance_pid(), signal.SIGKILL)
    h.wait_appliance(timeout=30)


def uptime(h: Harness) -> float:
    from scheduler.docker import parse_time

    return time.time() - parse_time(h.appliance_container().attrs["State"]["StartedAt"])


def wait_10s(h: Harness) -> None:
    """The engine restarts a container at once (100 ms) only when it ran 10 s or more; one that dies
    sooner waits twice as long as the last time: an isolated crash is one after 10 s (not timed)."""
    time.sleep(max(0.0, 10.5 - uptime(h)))


def nothing(h: Harness) -> None:
    del h


def restart(h: Harness) -> None:
    h.restart_appliance()


def measure(
    h: Harness,
    key: Key,
    app: str,
    runs: int,
    action: Callable[[], None],
    prepare: Callable[[Harness], None] = nothing,
) -> tuple[list[float], list[float], int, int]:
    listening, answered = [], []
    with Load(h.settings.http_port, f"{app}.{h.settings.domain}", workers=3, limit=600) as load:
        for _ in range(runs):
            time.sleep(0.3)
            prepare(h)
            began = time.monotonic()
            action()
            listening.append(time.monotonic() - began)
            answered.append(command_answered(h, key, began))
        time.sleep(0.3)
    return listening, answered, load.result.failed, load.result.sent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deis-recovery-") as tmp:
        h = Harness(Path(tmp))
        h.up()
        try:
            key = h.add_user("bench", admin=True)
            app = unique("rec")
            assert h.push(h.checkout("hello", app), key).returncode == 0
            h.wait_steady(app)
            base = []
            for _ in range(args.runs):
                began = time.monotonic()
                base.append(command_answered(h, key, began))
            marker = Path(tmp) / "OTHER"
            marker.write_text("other code\n")
            other = appliance_image.ensure(h.out, [*appliance_image.current_files(), ("src/OTHER", marker)])
            current = appliance_image.tag()
            images = iter([other, current] * args.runs)
            service = appliance_service(h.settings)

            def hand_over() -> None:
                handover.start_appliance(h.settings, h.out, service, next(images))

            router_specs = iter(["sha256:another-version", None] * args.runs)

            def hand_over_router() -> None:
                components.start_router(h.settings, h.out, image_id=next(router_specs))

            rows = [
                ("SIGKILL, up >= 10 s", measure(h, key, app, args.runs, lambda: kill(h), wait_10s)),
                ("SIGKILL, back to back", measure(h, key, app, args.runs, lambda: kill(h))),
                ("docker restart", measure(h, key, app, args.runs, lambda: restart(h))),
                ("handover to other code", measure(h, key, app, args.runs, hand_over)),
                ("router handover", measure(h, key, app, args.runs, hand_over_router)),
            ]
            components.start_router(h.settings, h.out)
            h.start_appliance()
            docker.from_env().images.remove(other)
        finally:
            h.down()
    print(f"\nbaseline: an SSH command at rest answered in {statistics.median(base):.2f} s (median)")
    print(f"{'scenario':26} {'listening (med/max)':>20} {'command (med/max)':>18} {'failed/sent':>12}")
    for label, (listening, answered, failed, sent) in rows:
        lm, am = statistics.median(listening), statistics.median(answered)
        print(
            f"{label:26} {lm:9.2f} / {max(listening):5.2f} s {am:8.2f} / {max(answered):5.2f} s"
            f" {failed:>5}/{sent}"
        )


if __name__ == "__main__":
    main()
