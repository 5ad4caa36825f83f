"""Buildpack apps from PyPI and npm: cold and warm push-to-live beside a bare install on the host.

    python benchmarks/buildpack_build.py [--runs 3]

A whole platform on free ports (tests.harness); the Flask app (requirements.txt) and the Express app
(package.json + package-lock.json) of tests/fixtures/apps, each pushed with stock git, timed from
`git push` to the new content served through the router:

    cold  the app's build cache purged first (pip / npm ci download everything)
    warm  the cache kept (dependencies restored), a source file changed

and, in the same run, the same install on the host with no cache: `pip install --target DIR -r
requirements.txt` (the platform's venv pip, pip's config files ignored) and `npm ci` (a fresh cache
directory); the cold push's compile step alone (its output lines timestamped) is set beside the bare
install too, as the part of the push that does the same work. Targets (issue 14): warm <= 2 s, cold <=
1.5 x the bare install. A first push of a static app runs before the figures, so the registry already
holds the slugrunner's layers. Prints a table and JSON; removes everything it made.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from builders import buildpack
from core.output import Output
from tests.harness import APPS, Harness, Key, unique

# fixture, the file whose greeting changes per push, the greeting in it, what the app adds after it
APPS_UNDER_TEST = {
    "flask": ("bp-flask", "app.py", "hello from flask", ""),
    "express": ("bp-express", "server.js", "hello from express", " production"),
}


def timed_push(h: Harness, work: Path, key: Key, app: str, expected: str) -> tuple[float, float]:
    """(push-to-live seconds, seconds of the compile step): the push's output lines are timestamped as
    they arrive, from `app detected` to `Discovering process types` being the buildpack's compile."""
    started = time.monotonic()
    argv = ["git", "-C", str(work), "push", "-q", "deis", "master"]
    proc = subprocess.Popen(argv, env=h.git_env(key), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: dict[str, float] = {}
    log = []
    for line in proc.stderr:
        log.append(line)
        for mark in ("app detected", "Discovering process types"):
            if mark in line and mark not in seen:
                seen[mark] = time.monotonic()
    if proc.wait() != 0 or len(seen) != 2:
        raise SystemExit(f"push failed:\n{''.join(log)}")
    while time.monotonic() - started < 60:
        status, body = h.get(app, timeout=2)
        if status == 200 and body.strip() == expected:
            return time.monotonic() - started, seen["Discovering process types"] - seen["app detected"]
        time.sleep(0.01)
    raise SystemExit(f"{app} never served {expected!r}")


def host_install(kind: str, tmp: Path) -> float:
    """The bare install of the same lockfile on the host, nothing cached."""
    fixture = APPS / APPS_UNDER_TEST[kind][0]
    dest = tmp / f"host-{kind}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(fixture, dest)
    if kind == "flask":
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {
            "PIP_CONFIG_FILE": os.devnull,  # the host's pip.conf points at local wheel mirrors
            "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        argv = [sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "--target", "pkgs"]
        argv += ["-r", "requirements.txt"]
    else:
        env = dict(os.environ)
        argv = ["npm", "ci", "--no-audit", "--no-fund", "--cache", str(dest / ".npm-cache")]
    started = time.monotonic()
    r = subprocess.run(argv, cwd=dest, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    shutil.rmtree(dest, ignore_errors=True)
    if r.returncode != 0:
        raise SystemExit(f"host install for {kind} failed:\n{r.stdout}{r.stderr}")
    return seconds


def bench(h: Harness, key: Key, kind: str, runs: int, tmp: Path) -> dict[str, object]:
    fixture, path, greeting, suffix = APPS_UNDER_TEST[kind]
    app = unique(f"bench-{kind}")
    work = h.checkout(fixture, app)
    r = h.push(work, key)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    cold, warm, host, compiles, current = [], [], [], [], greeting
    for n in range(runs):
        for phase in ("cold", "warm"):
            if phase == "cold":
                buildpack.purge_cache(h.settings, app)
            new = greeting.replace("hello", f"hello {phase}-{n}")
            h.commit_change(work, path, (work / path).read_text().replace(current, new, 1))
            current = new
            served, compiled = timed_push(h, work, key, app, new + suffix)
            (cold if phase == "cold" else warm).append(served)
            if phase == "cold":
                compiles.append(compiled)
        host.append(host_install(kind, tmp))
    cold_m, warm_m, host_m, compile_m = (statistics.median(x) for x in (cold, warm, host, compiles))
    return {
        "app": kind,
        "cold_s": [round(s, 2) for s in cold],
        "warm_s": [round(s, 2) for s in warm],
        "host_install_s": [round(s, 2) for s in host],
        "cold_compile_s": [round(s, 2) for s in compiles],
        "cold_median_s": round(cold_m, 2),
        "warm_median_s": round(warm_m, 2),
        "host_install_median_s": round(host_m, 2),
        "cold_compile_median_s": round(compile_m, 2),
        "cold_over_host": round(cold_m / host_m, 2),
        "cold_compile_over_host": round(compile_m / host_m, 2),
        "load_average": open("/proc/loadavg").read().split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="deis-bench-") as tmp:
        h = Harness(Path(tmp), out=Output(io.StringIO()))
        try:
            h.up()
            key = h.add_user("bench", admin=True)
            started = time.monotonic()
            first = h.push(h.checkout("bp-static", unique("bench-first")), key)
            if first.returncode != 0:
                raise SystemExit(first.stderr)
            results.append(
                {"app": "first push (registry empty)", "seconds": round(time.monotonic() - started, 2)}
            )
            for kind in APPS_UNDER_TEST:
                results.append(bench(h, key, kind, args.runs, Path(tmp)))
        finally:
            h.down()
    for r in results:
        if "cold_median_s" in r:
            print(
                f"{r['app']:<8} cold {r['cold_median_s']:>5}s  warm {r['warm_median_s']:>5}s"
                f"  host install {r['host_install_median_s']:>5}s  cold/host x{r['cold_over_host']}"
                f"  cold compile {r['cold_compile_median_s']}s (x{r['cold_compile_over_host']} host)"
                f"  (cold {r['cold_s']}, warm {r['warm_s']}, host {r['host_install_s']})"
                f"  load {r['load_average']}"
            )
        else:
            print(f"{r['app']:<28} {r['seconds']}s")
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
