import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from builders.dockerfile import build_kwargs, stream_lines
from builders.source import Source, human, parse_procfile
from core.errors import BuildError, ValidationError


def test_parse_procfile() -> None:
    text = "# comment\nweb: gunicorn app:wsgi --bind 0.0.0.0:$PORT\n\nworker:  python worker.py  \n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:wsgi --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
    }


@pytest.mark.parametrize("text", ["web", "web:", "Web: x", "a b: c"])
def test_bad_procfile_lines(text: str) -> None:
    with pytest.raises(ValidationError, match="Procfile line 1"):
        parse_procfile(text)


def test_build_kwargs() -> None:
    assert build_kwargs("127.0.0.1:5000/app:git-abc", "/var/lib/deis") == {
        "tag": "127.0.0.1:5000/app:git-abc",
        "labels": {"io.deis.platform": "/var/lib/deis"},
        "custom_context": True,
        "encoding": None,
        "rm": True,
        "forcerm": True,
        "pull": False,
        "decode": True,
    }


def test_stream_lines_relays_and_raises() -> None:
    seen: list[str] = []
    chunks = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"stream": " ---> abc"},
        {"stream": "\n"},
        {"error": "boom\n"},
    ]
    with pytest.raises(Exception, match="docker build failed: boom"):
        stream_lines(iter(chunks), seen.append)
    assert seen == ["Step 1/2 : FROM x", " ---> abc"]


def _repo(tmp_path: Path, files: dict[str, bytes]) -> Source:
    work = tmp_path / "work"
    work.mkdir()
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *argv], cwd=work, env=env, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout
    return Source(work / ".git", sha.strip(), {**env, "GIT_DIR": str(work / ".git")})


def test_tree_size_and_check_size(tmp_path: Path) -> None:
    src = _repo(tmp_path, {"a": b"x" * 3000, "dir/b": b"y" * 1000, "app.json": b"{}"})
    assert src.tree_size() == 4002
    src.check_size(4002)
    with pytest.raises(BuildError, match=r"too large: over 3.9 KiB unpacked \(at least"):
        src.check_size(4001)
    assert human(1 << 30) == "1.0 GiB" and human(512) == "512 bytes"


def test_metadata_files_are_read_with_a_cap(tmp_path: Path) -> None:
    src = _repo(tmp_path, {"Procfile": b"web: serve\n", "app.json": b" " * 5000, "d/x": b"1"})
    assert src.read_file("Procfile") == "web: serve\n"
    assert src.read_file("missing") is None
    with pytest.raises(BuildError, match=r"app\.json is too large: at most 4\.9 KiB"):
        src.read_file("app.json", limit=4999)
    assert src.read_file("app.json", limit=5000) == " " * 5000
    with pytest.raises(BuildError, match="d must be a file"):
        src.read_file("d")


def test_the_export_streams_to_disk(tmp_path: Path) -> None:
    src = _repo(tmp_path, {"a": b"x" * 3000, "dir/b": b"y"})
    src.extract(tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"x" * 3000
    assert (tmp_path / "out" / "dir" / "b").read_bytes() == b"y"
    with (tmp_path / "ctx.tar").open("wb") as f:
        src.archive_to(f)
    with tarfile.open(tmp_path / "ctx.tar") as tar:
        assert sorted(tar.getnames()) == ["a", "dir", "dir/b"]
    assert (tmp_path / "ctx.tar").read_bytes() == src.archive()
