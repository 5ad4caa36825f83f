"""The idle appliance's CPU with many apps deployed: what following the engine's events costs when
nothing happens (the issue's target: under 1 % of one core with 100 apps).

    python benchmarks/idle_cpu.py [--apps 100] [--seconds 60] [--parallel 4]

Starts its own platform (tests.harness: etcd, registry, nginx and the appliance on free ports),
pushes the hello fixture app once, deploys its image to the other apps with `builds:create`
(`--parallel` SSH sessions at a time), waits until every app answers through the router, lets it
settle, then reads the appliance process's CPU time (/proc/PID/stat, all its threads) over
`--seconds` and prints it as a share of one core. Bounded: every wait has a deadline; tears
everything down at the end.

Measured here (2 shared cores, other test runs beside it), 100 apps:
- events + full resync every 30 s: 4.28 % of one core (over the target; the full pass dominated);
- events + full resync every 300 s (RESYNC): 0.02 % (0.01 s CPU in 60 s); one full pass over 100 apps
  took 9.3 s wall, 0.85 s CPU (0.28 % of a core averaged over 300 s).
- router (tests/e2e/test_components.py): nginx master and workers SIGKILLed -> serving again after
  0.59 s, 0.86 s, 1.16 s for three kills in a row (the engine's restart backoff doubles).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.platform import Platform
from appliance.reconciler import Reconciler
from releaser import releases
from releaser.store import Store
from tests.harness import Harness, unique

TARGET = 1.0  # % of one core


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deploy_all(h: Harness, apps: int, parallel: int) -> list[str]:
    key = h.add_user("bench", admin=True)
    first = unique("idle")
    r = h.push(h.checkout("hello", first), key)
    assert r.returncode == 0, r.stderr
    release = releases.latest(Store.of(h.settings), first)
    assert release is not None and release.build is not None
    image = release.build.image

    def one(i: int) -> str:
        name = f"{first}-{i:03d}"
        for argv in (("apps:create", name), ("builds:create", image, "--app", name)):
            res = h.ssh(key, *argv, timeout=300)
            assert res.returncode == 0, f"{argv}: {res.stderr.strip()[-300:]}"
        return name

    with ThreadPoolExecutor(parallel) as pool:
        return [first, *pool.map(one, range(1, apps))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deis-idle-") as tmp:
        h = Harness(Path(tmp))
        h.up()
        try:
            began = time.monotonic()
            names = deploy_all(h, args.apps, args.parallel)
            print(f"deployed {len(names)} apps in {time.monotonic() - began:.0f} s", flush=True)
            for name in names:
                h.wait_for(name, "hello", timeout=60)
            time.sleep(10)  # every deploy's aftermath (image GC, retire) over
            pid = h.appliance_pid()
            assert pid is not None, "the appliance is not running"
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            share = 100 * (cpu1 - cpu0) / (t1 - t0)
            verdict = "ok" if share < TARGET else f"OVER the {TARGET:g} % target"
            print(
                f"idle appliance with {len(names)} apps: {share:.2f} % of one core "
                f"({cpu1 - cpu0:.2f} s CPU in {t1 - t0:.0f} s) {verdict}"
            )
            # What the safety net costs: one full pass, here in this process (it changes nothing now).
            rec = Reconciler(Platform.from_settings(h.settings))
            wall, cpu = time.monotonic(), time.process_time()
            rec.pass_once()
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            print(
                f"one full pass over {len(names)} apps: {wall:.2f} s, {cpu:.2f} s CPU here; every "
                f"{rec.full:.0f} s that is {100 * cpu / rec.full:.2f} % of one core"
            )
        finally:
            h.down()


if __name__ == "__main__":
    main()
