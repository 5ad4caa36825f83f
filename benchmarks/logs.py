"""The log store under load: how many lines a second one app can log before lines go missing, and
the appliance's CPU while many apps log at a steady rate.

    python benchmarks/logs.py [--rates 2000,10000,50000] [--seconds 5] [--apps 10] [--rate 1000]
                              [--cpu-seconds 30]

Starts its own platform (tests.harness), with the store's bounds raised so nothing is trimmed while
counting. Part 1: one app runs `rate.py` (numbered lines at RATE a second) for `--seconds` at each
rate; then the process is scaled away (its last lines are read before removal) and the store is
checked for every number: missing = highest - distinct, which counts the store's drops and anything
the engine's json-file log rotated away before the collector read it. Part 2: `--apps` apps each log
`--rate` lines a second; the appliance's CPU (/proc/PID/stat, all threads) over `--cpu-seconds`, as a
share of one core, and the engine's. Bounded: every wait has a deadline; tears everything down.

Measured here (2 shared cores, other helpers' test runs beside it; docker 20.10, json-file 10 MB x 3):
- one app, 5 s at each rate: 2,000 / 5,000 / 20,000 / 40,000 lines/s: every line kept, none twice
  (218,170 at 40,000/s, three runs). Asked 80,000/s (the engine's logger holds the writer back to
  50,000-80,000): one run kept all 245,594; two kept 245,591 of 367,708, i.e. one whole 10 MB file
  of the engine's json-file log lost; asked 150,000/s: 810,165 written, 321,697 kept. Lines begin to
  go missing between 40,000 and 80,000 lines/s, and that loss is the engine's: its log rotated a file
  away before the collector (about 60,000 lines/s from one container) read it. It is NOT counted in
  the stream (the store's own drops are; none happened). Before the collector skipped re-sent lines,
  the engine's follow also repeated a rotated file: 102,755 duplicates at 40,000/s; now 0.
- 10 apps x 1,000 lines/s for 30 s: the appliance 44.5 % of one core, dockerd 48.0 %; every line of
  every app kept, none twice (about 44 us of appliance CPU a line, mostly docker-py's per-line frames).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Harness, Key, unique

RATE_PY = """import os, signal, sys, time
rate = int(os.environ.get("RATE", "1000"))
n, start = 0, time.monotonic()
def total(*_):
    sys.stdout.write(f"total {n}\\n")
    sys.stdout.flush()
    os._exit(0)
signal.signal(signal.SIGTERM, total)
while True:
    due = int((time.monotonic() - start) * rate)
    sys.stdout.write("".join(f"line {k}\\n" for k in range(n + 1, due + 1)))
    sys.stdout.flush()
    n = max(n, due)
    time.sleep(0.005)
"""
PROCFILE = "web: exec python3 -u /app/app.py\nrate: exec python3 -u /app/rate.py\n"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ssh(h: Harness, key: Key, *argv: str) -> None:
    r = h.ssh(key, *argv, timeout=300)
    assert r.returncode == 0, f"{argv}: {r.stderr.strip()[-300:]}"


def deploy(h: Harness, key: Key, name: str) -> None:
    work = h.checkout("hello", name)
    (work / "rate.py").write_text(RATE_PY)
    h.commit_change(work, "Procfile", PROCFILE)
    r = h.push(work, key)
    assert r.returncode == 0, r.stderr[-500:]


def numbers(h: Harness, app: str, release: int) -> list[int]:
    return [n for n, _ in stamped(h, app, release)]


def stamped(h: Harness, app: str, release: int) -> list[tuple[int, float]]:
    """(number, time the engine saw it) of every rate.py line of `release` in the store."""
    found = []
    for f in sorted((h.settings.logs_dir / app).glob("*.jsonl")):
        for raw in f.read_bytes().splitlines():
            d = json.loads(raw)
            if d["s"] == "rate.1" and d["r"] == release and d["m"].startswith("line "):
                found.append((int(d["m"][5:]), float(d["t"])))
    return found


def written(h: Harness, app: str, release: int) -> int:
    """How many lines rate.py says it wrote (its last line, on SIGTERM); 0 if that line is missing."""
    for f in sorted((h.settings.logs_dir / app).glob("*.jsonl")):
        for raw in f.read_bytes().splitlines():
            d = json.loads(raw)
            if d["s"] == "rate.1" and d["r"] == release and d["m"].startswith("total "):
                return int(d["m"][6:])
    return 0


def current(h: Harness, key: Key, app: str) -> int:
    r = h.ssh(key, "releases", "--app", app, "--json")
    return max(int(x["version"]) for x in json.loads(r.stdout))


def part_one(h: Harness, key: Key, app: str, rates: list[int], seconds: float) -> None:
    for rate in rates:
        ssh(h, key, "config:set", f"RATE={rate}", "--app", app)
        ssh(h, key, "scale", "rate=1", "--app", app)
        time.sleep(seconds)
        ssh(h, key, "scale", "rate=0", "--app", app)
        release = current(h, key, app)
        lines = stamped(h, app, release)
        got = [n for n, _ in lines]
        distinct = len(set(got))
        top = max(written(h, app, release), *got, 0)  # the last line may be a few behind its writes
        span = max(t for _, t in lines) - min(t for _, t in lines) if len(lines) > 1 else 1.0
        print(
            f"{rate:>7} lines/s asked: {len(lines) / span:>8.0f}/s written, {distinct} kept, "
            f"{top - distinct} missing, {len(got) - distinct} twice",
            flush=True,
        )


def part_two(h: Harness, key: Key, first: str, apps: int, rate: int, seconds: float) -> None:
    names = [first] + [unique("logbench") for _ in range(apps - 1)]
    for name in names[1:]:
        deploy(h, key, name)
    for name in names:
        ssh(h, key, "config:set", f"RATE={rate}", "--app", name)
        ssh(h, key, "scale", "rate=1", "--app", name)
    time.sleep(5)
    pid = h.appliance_pid()
    assert pid is not None
    dockerd = int(Path("/var/run/docker.pid").read_text()) if Path("/var/run/docker.pid").exists() else None
    cpu0, d0, t0 = cpu_seconds(pid), cpu_seconds(dockerd) if dockerd else 0.0, time.monotonic()
    time.sleep(seconds)
    cpu1, d1, t1 = cpu_seconds(pid), cpu_seconds(dockerd) if dockerd else 0.0, time.monotonic()
    share = 100 * (cpu1 - cpu0) / (t1 - t0)
    print(f"{apps} apps x {rate} lines/s: appliance {share:.1f} % of one core", end="")
    print(f", dockerd {100 * (d1 - d0) / (t1 - t0):.1f} %" if dockerd else "", flush=True)
    for name in names:
        ssh(h, key, "scale", "rate=0", "--app", name)
        release = current(h, key, name)
        got = numbers(h, name, release)
        top = max(written(h, name, release), *got, 0)
        print(f"  {name}: {top} written, {top - len(set(got))} missing, {len(got) - len(set(got))} twice")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="2000,10000,30000,60000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--apps", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deis-logs-") as tmp:
        h = Harness(Path(tmp))
        h.settings.log_lines, h.settings.log_bytes = 5_000_000, 2_000_000_000  # nothing trimmed
        h.up()
        try:
            key = h.add_user("bench", admin=True)
            first = unique("logbench")
            deploy(h, key, first)
            if args.rates:
                part_one(h, key, first, [int(r) for r in args.rates.split(",")], args.seconds)
            if args.apps:
                part_two(h, key, first, args.apps, args.rate, args.cpu_seconds)
        finally:
            h.down()


if __name__ == "__main__":
    main()
