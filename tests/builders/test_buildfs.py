"""The host's side of the trees a build controls: what a hostile build leaves there is read without
following links or blocking, and cleaned without touching anything outside the tree."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from builders import buildfs
from core.errors import BuildError

UID = 64999


def test_read_output_reads_a_regular_file_and_nothing_when_missing(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_bytes(b"--- {}\n")
    assert buildfs.read_output(tmp_path / "r.yml", 100, "bin/release's output") == b"--- {}\n"
    assert buildfs.read_output(tmp_path / "none.yml", 100, "bin/release's output") is None


def test_read_output_never_follows_a_symlink_even_to_a_real_file(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("root's secret\n")
    (tmp_path / "r.yml").symlink_to(secret)
    with pytest.raises(BuildError, match="bin/release's output is a symbolic link") as caught:
        buildfs.read_output(tmp_path / "r.yml", 100, "bin/release's output")
    assert "secret" not in str(caught.value)
    (tmp_path / "dangling.yml").symlink_to(tmp_path / "nowhere")  # was "internal error: FileNotFoundError"
    with pytest.raises(BuildError, match="is a symbolic link"):
        buildfs.read_output(tmp_path / "dangling.yml", 100, "bin/release's output")


def test_read_output_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "r.yml")
    result: list[object] = []

    def read() -> None:
        try:
            buildfs.read_output(tmp_path / "r.yml", 100, "bin/release's output")
        except BuildError as exc:
            result.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "reading a FIFO the build left hung"
    assert [str(e) for e in result] == [
        "bin/release's output is not a regular file: the build may only leave a regular file"
    ]


def test_read_output_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_bytes(b"x" * 2049)
    with pytest.raises(BuildError, match="bin/release's output is larger than 2 KiB"):
        buildfs.read_output(tmp_path / "r.yml", 2048, "bin/release's output")
    (tmp_path / "r.yml").write_bytes(b"x" * 2048)
    assert buildfs.read_output(tmp_path / "r.yml", 2048, "x") == b"x" * 2048


def test_sanitize_strips_privilege_bits_and_special_files_and_hands_everything_over(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "deep" / "er").mkdir(parents=True)
    suid = cache / "deep" / "er" / "sh"
    suid.write_bytes(b"\x7fELF")
    suid.chmod(0o4755)
    sgid_dir = cache / "deep"
    sgid_dir.chmod(0o2775)
    plain = cache / "plain"
    plain.write_text("kept exactly\n")
    plain.chmod(0o640)
    os.mkfifo(cache / "fifo")
    os.mknod(cache / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(cache / "sock"))
    outside = tmp_path / "host-file"  # a host file the build links to: never changed
    outside.write_text("host\n")
    outside.chmod(0o4755)
    (cache / "link").symlink_to(outside)
    (cache / "dirlink").symlink_to(tmp_path)

    assert buildfs.sanitize(cache, UID) > 0
    assert stat.S_IMODE(suid.stat().st_mode) == 0o755
    assert stat.S_IMODE(sgid_dir.stat().st_mode) == 0o775
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640 and plain.read_text() == "kept exactly\n"
    assert sorted(p.name for p in cache.iterdir()) == ["deep", "dirlink", "link", "plain"]
    for p in (cache, suid, sgid_dir, plain, cache / "link"):
        assert (p.lstat().st_uid, p.lstat().st_gid) == (UID, UID), p
    assert stat.S_IMODE(outside.stat().st_mode) == 0o4755 and outside.stat().st_uid == 0
    assert tmp_path.stat().st_uid == 0
    assert buildfs.sanitize(cache, UID) == 0  # nothing left to change


def test_hand_over_never_goes_through_a_symlink(tmp_path: Path) -> None:
    tree, outside = tmp_path / "app", tmp_path / "outside"
    (tree / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "f").write_text("host\n")
    (tree / "sub" / "f").write_text("app\n")
    (tree / "out").symlink_to(outside)
    (tree / "f").symlink_to(outside / "f")
    buildfs.hand_over(tree, UID)
    assert {p.lstat().st_uid for p in (tree, tree / "sub", tree / "sub" / "f", tree / "out", tree / "f")} == {
        UID
    }
    assert outside.stat().st_uid == 0 and (outside / "f").stat().st_uid == 0


def test_sanitize_of_no_tree_changes_nothing(tmp_path: Path) -> None:
    assert buildfs.sanitize(tmp_path / "missing", UID) == 0
    (tmp_path / "link").symlink_to(tmp_path)
    assert buildfs.sanitize(tmp_path / "link", UID) == 0
    assert tmp_path.stat().st_uid == 0
