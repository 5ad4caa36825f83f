"""SSH command latency: round trips of `apps:list` and `config` beside the SSH floor, and config:set
until the new value is served through the router.

    python -m benchmarks.commands [--runs 20] [--set-runs 5]

Starts its own platform (tests.harness.Harness: etcd, registry, nginx, the appliance on free ports),
deploys the hello fixture app, measures, and tears everything down. Each figure is the wall time of
a stock `ssh` process (connect, key exchange, auth, command, exit) as a user would see it. The floor
is `help` (a command that reads no state), measured in the same run, so the difference is what the
command itself costs. Targets: round trip <= 0.2 s; config:set -> served <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from tests.harness import Harness, Key, unique

ROUND_TRIP_TARGET = 0.2
SERVED_TARGET = 2.0


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def timed_ssh(h: Harness, key: Key, *command: str) -> float:
    start = time.perf_counter()
    r = h.ssh(key, *command)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"ssh {' '.join(command)} failed ({r.returncode}): {r.stderr}")
    return took


def config_set_to_served(h: Harness, key: Key, app: str, value: str) -> tuple[float, float]:
    """(seconds until config:set returned, seconds until the router served the new value).

    The router is polled while the command runs: the new release serves from the router switch on,
    before the old containers are retired and the command returns."""
    argv = [*h.ssh_argv(key), "git@127.0.0.1", "config:set", "--app", app, f"GREETING={value}"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h.wait_for(app, value, timeout=60)
    served = time.perf_counter() - start
    _, err = proc.communicate(timeout=120)
    returned = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"config:set failed ({proc.returncode}): {err.decode()}")
    return returned, served


def measure(h: Harness, runs: int, set_runs: int) -> dict[str, object]:
    key = h.add_user("bench", admin=True)
    app = unique("bench")
    work = h.checkout("hello", app)
    r = h.push(work, key)
    if r.returncode != 0:
        raise SystemExit(f"push failed: {r.stderr}")
    h.wait_for(app, "hello", timeout=60)
    for cmd in (["help"], ["apps:list"], ["config", "--app", app]):  # warm up
        timed_ssh(h, key, *cmd)
    series: dict[str, list[float]] = {"help (floor)": [], "apps:list": [], "config": []}
    for _ in range(runs):  # interleaved, so load from other processes hits all three alike
        series["help (floor)"].append(timed_ssh(h, key, "help"))
        series["apps:list"].append(timed_ssh(h, key, "apps:list"))
        series["config"].append(timed_ssh(h, key, "config", "--app", app))
    returned, served = [], []
    for i in range(set_runs):
        a, b = config_set_to_served(h, key, app, f"bench-{i}-{time.time_ns()}")
        returned.append(a)
        served.append(b)
    result: dict[str, object] = {"runs": runs, "set_runs": set_runs}
    for name, values in series.items():
        result[name] = {"p50": statistics.median(values), "p95": pct(values, 95), "min": min(values)}
    result["config:set returned"] = {"p50": statistics.median(returned), "max": max(returned)}
    result["config:set -> served"] = {"p50": statistics.median(served), "max": max(served)}
    return result


def report(result: dict[str, object]) -> str:
    lines = [f"ssh round trips ({result['runs']} runs each, seconds):"]
    for name in ("help (floor)", "apps:list", "config"):
        d = result[name]
        assert isinstance(d, dict)
        over = "" if name.endswith("(floor)") or d["p95"] <= ROUND_TRIP_TARGET else "  OVER TARGET"
        lines.append(f"  {name:<14} p50 {d['p50']:.3f}  p95 {d['p95']:.3f}  min {d['min']:.3f}{over}")
    served = result["config:set -> served"]
    returned = result["config:set returned"]
    assert isinstance(served, dict) and isinstance(returned, dict)
    lines.append(f"config:set ({result['set_runs']} runs, seconds):")
    lines.append(f"  command returned   p50 {returned['p50']:.3f}  max {returned['max']:.3f}")
    over = "" if served["max"] <= SERVED_TARGET else "  OVER TARGET"
    lines.append(f"  new value served   p50 {served['p50']:.3f}  max {served['max']:.3f}{over}")
    lines.append(f"targets: round trip <= {ROUND_TRIP_TARGET} s, config:set -> served <= {SERVED_TARGET} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--set-runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deis-bench-") as tmp:
        h = Harness(Path(tmp))
        try:
            h.up()
            result = measure(h, args.runs, args.set_runs)
        finally:
            h.down()
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
