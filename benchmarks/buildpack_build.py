"""Buildpack builds, cold against warm: how much the per-app build cache saves, and slug sizes.

    python -m benchmarks.buildpack_build [--runs N]

A whole platform on free ports (tests.harness), then for the Python app with a vendored wheel and
the Node.js app with a vendored package: `builders.build()` (compile in the slugbuilder, slug,
slugrunner image, push to the registry) timed with

    cold  the app's build cache purged first (pip / npm install run)
    warm  the cache kept from the build before (dependencies restored), a source file changed

each on a new commit. A first build of another app runs before the figures, so the registry already
holds the slugrunner's base layers (that one-off push is reported apart). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from builders import build as build_image
from builders import buildpack
from core.output import Output
from tests.e2e.buildpack_apps import python_dep_checkout
from tests.harness import Harness, unique


def timed_build(h: Harness, app: str, work: Path, n: int) -> tuple[float, int, str]:
    h.commit_change(work, "bench.txt", f"run {n}\n")
    sha = h.git(work, "rev-parse", "HEAD").stdout.strip()
    out = io.StringIO()
    started = time.monotonic()
    b = build_image(h.settings, app, work / ".git", sha, "bench", Output(out))
    return time.monotonic() - started, b.slug_size, out.getvalue()


def bench(h: Harness, name: str, app: str, work: Path, runs: int) -> dict[str, object]:
    cold, warm, size = [], [], 0
    for n in range(runs):
        buildpack.purge_cache(h.settings, app)
        seconds, size, log = timed_build(h, app, work, 2 * n)
        assert "Restoring cached" not in log, log
        cold.append(seconds)
        seconds, size, log = timed_build(h, app, work, 2 * n + 1)
        assert "Restoring cached" in log, log
        warm.append(seconds)
    result = {
        "app": name,
        "cold_s": [round(s, 2) for s in cold],
        "warm_s": [round(s, 2) for s in warm],
        "cold_median_s": round(statistics.median(cold), 2),
        "warm_median_s": round(statistics.median(warm), 2),
        "speedup": round(statistics.median(cold) / statistics.median(warm), 2),
        "slug_bytes": size,
        "slug": buildpack.human_size(size),
    }
    return result


def image_methods(h: Harness, app: str, work: Path, runs: int) -> dict[str, object]:
    """slugrunner + slug as an image: `docker build` of a two-file context (what builds use) against
    create + put_archive + commit of a container."""
    import docker

    from builders import dockerfile, stacks

    sha = h.git(work, "rev-parse", "HEAD").stdout.strip()
    ws = buildpack.workspace(h.settings)
    client = docker.from_env()
    build_s, commit_s = [], []
    try:
        slug = buildpack.compile_slug(h.settings, app, work / ".git", sha, {}, ws, Output(io.StringIO()))
        for n in range(runs):
            tag = f"{h.settings.registry}/{app}:bench-build-{n}"
            started = time.monotonic()
            dockerfile.build_image(client, buildpack.slug_context(slug.path, stacks.RUNNER_IMAGE), tag, print)
            build_s.append(time.monotonic() - started)
            started = time.monotonic()
            c = client.containers.create(stacks.RUNNER_IMAGE, command=["start", "web"])
            c.put_archive("/app", slug.path.read_bytes())
            c.commit(f"{h.settings.registry}/{app}", f"bench-commit-{n}")
            c.remove()
            commit_s.append(time.monotonic() - started)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    return {
        "app": "image from slug",
        "docker_build_s": [round(x, 2) for x in build_s],
        "create_put_commit_s": [round(x, 2) for x in commit_s],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deis-bench-") as tmp:
        h = Harness(Path(tmp), out=Output(io.StringIO()))
        try:
            h.up()
            first = unique("bench-first")
            work = h.checkout("bp-static", first)
            seconds, _, _ = timed_build(h, first, work, 0)
            results: list[dict[str, object]] = [
                {"app": "first build (registry empty)", "seconds": round(seconds, 2)}
            ]
            app = unique("bench-py")
            results.append(bench(h, "python + vendored wheel", app, python_dep_checkout(h, app), args.runs))
            node = unique("bench-node")
            node_work = h.checkout("bp-node", node)
            results.append(bench(h, "node + vendored package", node, node_work, args.runs))
            results.append(image_methods(h, app, h.checkout("bp-python", unique("bench-img")), args.runs))
        finally:
            h.down()
    for r in results:
        if "speedup" in r:
            print(
                f"{r['app']:<26} cold {r['cold_median_s']:>5}s  warm {r['warm_median_s']:>5}s"
                f"  x{r['speedup']:<5} slug {r['slug']}  (cold {r['cold_s']}, warm {r['warm_s']})"
            )
        else:
            print(f"{r['app']:<26} {r.get('seconds', r)}")
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
