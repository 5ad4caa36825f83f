"""What the host's pass over a build cache costs per build (builders.buildfs.sanitize: setuid/setgid bits
stripped, special files removed, ownership checked, no symlink followed), beside `find DIR -printf ''`
(the plain walk of the same tree) in the same run, on a synthetic cache shaped like npm's and pip's
(many small files in nested directories).

    python benchmarks/build_cache_walk.py [--files 20000] [--runs 5]

Also the first build after an upgrade (a root cache handed over to the build user: every entry chowned).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builders import buildfs

UID = 64999


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"pkg{i // 100:04d}" / "lib" / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.js").write_bytes(b"x" * 200)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cache-walk-"))
    try:
        make_tree(root, args.files)
        migrate = timed(lambda: buildfs.sanitize(root, UID))  # root-owned: every entry handed over
        find = [
            timed(lambda: subprocess.run(["find", str(root), "-printf", ""], check=True))
            for _ in range(args.runs)
        ]
        walk = [timed(lambda: buildfs.sanitize(root, UID)) for _ in range(args.runs)]
        entries = sum(1 for _ in root.rglob("*"))
        print(f"{entries} entries, median of {args.runs} runs")
        print(f"  find -printf ''          {statistics.median(find) * 1000:8.1f} ms   (baseline walk)")
        print(f"  sanitize (nothing to do) {statistics.median(walk) * 1000:8.1f} ms   (after every build)")
        print(f"  sanitize (migration)     {migrate * 1000:8.1f} ms   (first build on a root cache, once)")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
