"""The pids limit over a Dockerfile build's RUN steps. buildah 1.28 has no --pids-limit; each RUN
step is a runc container whose cgroup is exactly `--cgroup-parent` (runc removes it after the step),
so the build gets a cgroup of its own with `pids.max` set, and its steps a child of it: the limit
holds over every process a step starts, as a docker container's --pids-limit does.

    /sys/fs/cgroup/pids/deis-builds/deis-build-N        pids.max = settings.build_pids_limit
                                                  /run  the RUN step (made and removed by runc)

cgroup v1 (this engine's) or v2 (the unified tree, where the pids controller must be enabled for
the children). The paths are pure; `limited()` makes and removes the directories.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import ServiceError

ROOT = Path("/sys/fs/cgroup")
PARENT = "deis-builds"


def build_dir(root: Path, name: str) -> tuple[Path, bool]:
    """(the build's cgroup directory, whether it is in a v2 unified tree)."""
    if (root / "pids").is_dir():
        return root / "pids" / PARENT / name, False
    return root / PARENT / name, True


def cgroup_parent(name: str) -> str:
    """What buildah gets: the step's cgroup path, relative to each hierarchy's root."""
    return f"/{PARENT}/{name}/run"


def _enable_pids(path: Path) -> None:
    # v2: a controller works in a directory only when its parent lists it in cgroup.subtree_control.
    for parent in (path.parent.parent, path.parent, path):
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text("+pids")


def _remove(path: Path, others: list[Path]) -> None:
    # runc makes the steps' parent directories in every v1 hierarchy (memory, cpu, ...), and
    # removes only its own: the build's go here too.
    for other in others:
        for d in (other / "run", other):
            with contextlib.suppress(OSError):
                d.rmdir()
    for _ in range(50):  # the last step's runc may still be tearing its cgroup down
        for d in (path / "run", path):
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()
        if not path.exists():
            return
        time.sleep(0.1)


@contextlib.contextmanager
def limited(name: str, pids: int, root: Path = ROOT) -> Iterator[str]:
    """A cgroup limited to `pids` processes for the block; yields buildah's --cgroup-parent."""
    path, unified = build_dir(root, name)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if unified:
            _enable_pids(path)
        (path / "pids.max").write_text(f"{pids}\n")
    except OSError as exc:
        raise ServiceError(f"cannot limit the build's processes ({path}): {exc.strerror or exc}") from exc
    try:
        yield cgroup_parent(name)
    finally:
        others = [] if unified else [h / PARENT / name for h in root.iterdir() if h.name != "pids"]
        _remove(path, others)
