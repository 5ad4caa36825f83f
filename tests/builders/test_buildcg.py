"""The Dockerfile build's pids cgroup, on a fake cgroup tree."""

from __future__ import annotations

from pathlib import Path

from builders import buildcg


def test_v1_build_cgroup_is_made_limited_and_removed(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    memory = tmp_path / "memory" / "deis-builds" / "deis-build-7"
    with buildcg.limited("deis-build-7", 1024, root=tmp_path) as parent:
        (memory / "run").mkdir(parents=True)  # as runc leaves it
        assert parent == "/deis-builds/deis-build-7/run"
        path = tmp_path / "pids" / "deis-builds" / "deis-build-7"
        assert (path / "pids.max").read_text() == "1024\n"
        (path / "pids.max").unlink()  # a real cgroup's files go with its directory
    assert not path.exists() and not memory.exists()


def test_v2_enables_the_pids_controller_for_the_children(tmp_path: Path) -> None:
    with buildcg.limited("deis-build-1", 64, root=tmp_path):
        path = tmp_path / "deis-builds" / "deis-build-1"
        assert (path / "pids.max").read_text() == "64\n"
        assert (tmp_path / "deis-builds" / "cgroup.subtree_control").read_text() == "+pids"
        for name in ("pids.max", "cgroup.subtree_control"):
            (path / name).unlink()
    assert not path.exists()
