"""Backing services: `services:create` to accepting connections, and backup / restore throughput of
a 100 MB postgres database through ssh.

    python -m benchmarks.services [--runs 3] [--mb 100]

Starts its own platform (tests.harness.Harness), so the addons image must exist or is made first
(not timed). Baselines from the same run: the SSH floor (`help`), a bare `docker run` of the addons
image, and `pg_dump` / `pg_restore` through `docker exec` on the host (no ssh, no appliance), so
the difference is what the platform adds. Target: create -> accepting connections <= 10 s warm.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from addons import engine as svc_engine
from addons.kinds import POSTGRES
from builders import components
from tests.harness import Harness, Key, unique

CREATE_TARGET = 10.0


def timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    kw.setdefault("stdout", subprocess.PIPE)
    r = subprocess.run(argv, stderr=subprocess.PIPE, check=False, **kw)  # type: ignore[call-overload]
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-3:])} failed ({r.returncode}): {r.stderr[-500:]!r}")
    return took


def ssh(h: Harness, key: Key, *command: str) -> list[str]:
    return [*h.ssh_argv(key), "git@127.0.0.1", *command]


def create_figures(h: Harness, key: Key, runs: int) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {"help": [], "docker run": [], "postgres": [], "redis": []}
    for _ in range(runs):
        got["help"].append(timed(ssh(h, key, "help")))
        got["docker run"].append(
            timed(["docker", "run", "--rm", "--network", "none", components.ADDONS_IMAGE, "true"])
        )
        for kind in ("postgres", "redis"):
            name = unique(f"bench-{kind[:2]}")
            got[kind].append(timed(ssh(h, key, "services:create", kind, name)))
            timed(ssh(h, key, "services:destroy", name, "--confirm", name))
    return got


def fill(h: Harness, key: Key, name: str, mb: int) -> int:
    """About `mb` MB of rows of random hex text (it compresses about 2:1); the database's size."""
    rows = mb * 1000  # about 1 kB a row with its overhead
    sql = (
        "CREATE TABLE big (id int, body text);"
        "INSERT INTO big SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')"
        f" FROM generate_series(1, 28) i) FROM generate_series(1, {rows}) g;"
        "SELECT pg_database_size('app');"
    )
    r = subprocess.run(
        ssh(h, key, "services:connect", name), input=sql, capture_output=True, text=True, check=True
    )
    return int([line for line in r.stdout.split() if line.isdigit()][-1])


def dump_figures(h: Harness, key: Key, mb: int, work: Path) -> None:
    name, second = unique("bench-big"), unique("bench-copy")
    subprocess.run(ssh(h, key, "services:create", "postgres", name), capture_output=True, check=True)
    subprocess.run(ssh(h, key, "services:create", "postgres", second), capture_output=True, check=True)
    try:
        size = fill(h, key, name, mb)
        dump = work / "big.dump"
        with open(dump, "wb") as out:
            backup = timed(ssh(h, key, "services:backup", name), stdout=out)
        container = svc_engine.container_name(str(h.settings.state_dir), name)
        with open(work / "direct.dump", "wb") as out:
            direct = timed(["docker", "exec", "--user", "postgres", container, *POSTGRES.backup], stdout=out)
        with open(dump, "rb") as data:
            restore = timed(ssh(h, key, "services:restore", second), stdin=data)
        other = svc_engine.container_name(str(h.settings.state_dir), second)
        with open(dump, "rb") as data:
            direct_restore = timed(
                ["docker", "exec", "-i", "--user", "postgres", other, *POSTGRES.restore], stdin=data
            )
        mib = size / 2**20
        print(f"database {mib:.0f} MiB, custom-format dump {dump.stat().st_size / 2**20:.0f} MiB")
        print(f"  services:backup   {backup:6.1f} s  {mib / backup:6.1f} MiB/s of database")
        print(f"  docker exec dump  {direct:6.1f} s  {mib / direct:6.1f} MiB/s (baseline)")
        print(f"  services:restore  {restore:6.1f} s  {mib / restore:6.1f} MiB/s of database")
        print(f"  docker exec load  {direct_restore:6.1f} s  {mib / direct_restore:6.1f} MiB/s (baseline)")
    finally:
        for n in (name, second):
            subprocess.run(
                ssh(h, key, "services:destroy", n, "--confirm", n), capture_output=True, check=False
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        h = Harness(Path(tmp))
        try:
            h.up()
            components.ensure_addons_image(h.settings, h.out)
            key = h.add_user("bench", admin=True)
            got = create_figures(h, key, args.runs)
            print(f"services:create to accepting connections ({args.runs} runs each, median / max):")
            for what, values in got.items():
                print(f"  {what:11} {statistics.median(values):5.2f} s / {max(values):5.2f} s")
            verdict = "met" if max(got["postgres"]) <= CREATE_TARGET else "MISSED"
            print(f"  target <= {CREATE_TARGET:.0f} s for postgres: {verdict}")
            dump_figures(h, key, args.mb, Path(tmp))
        finally:
            h.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
