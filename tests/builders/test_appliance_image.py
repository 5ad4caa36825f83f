"""The appliance image's content and digest (pure, on a tree made here)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from builders import appliance_image, buildfs
from core.errors import BuildError


def tree(tmp_path: Path) -> Path:
    for rel, text in {
        "core/a.py": "A = 1\n",
        "core/__pycache__/a.cpython-311.pyc": "x",
        "hooks/run": "#!/bin/sh\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_code_files_are_the_packages_without_bytecode(tmp_path: Path) -> None:
    files = appliance_image.code_files(tree(tmp_path))
    assert [name for name, _ in files] == ["src/core/a.py", "src/hooks/run"]


def test_the_digest_follows_content_and_the_executable_bit(tmp_path: Path) -> None:
    files = appliance_image.code_files(tree(tmp_path))
    first = appliance_image.digest(files)
    assert appliance_image.digest(files) == first
    (tmp_path / "hooks/run").chmod(0o755)
    second = appliance_image.digest(files)
    assert second != first
    (tmp_path / "core/a.py").write_text("A = 2\n")
    third = appliance_image.digest(files)
    assert third not in (first, second)
    assert appliance_image.digest(files, base_id="sha256:remade") != third


def test_runtime_distributions_leave_the_test_tools_out() -> None:
    names = {d.metadata["Name"].lower() for d in appliance_image.runtime_dists()}
    assert {"asyncssh", "pygit2", "docker", "python-etcd", "jinja2"} <= names
    assert not names & {"pytest", "mypy", "ruff", "hypothesis"}


def test_the_dockerfile_builds_on_the_base_and_labels_its_digest() -> None:
    text = appliance_image.dockerfile("0123")
    assert text.startswith("FROM deis/appliance-base:bookworm\n")
    assert text.endswith("LABEL io.deis.appliance-digest=0123\n")
    assert 'ENTRYPOINT ["/opt/deis/entrypoint"]' in text


def _tar(*members: tuple[str, int]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = 2, mode
            tar.addfile(info, io.BytesIO(b"hi"))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


@pytest.mark.parametrize("filters", [True, False])
def test_context_extraction_keeps_members_inside_and_drops_setuid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    if not filters:  # Debian 12's Python 3.11.2, which the appliance's image runs
        monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    with _tar(("ok/file", 0o4777)) as tar:
        for member in tar:
            buildfs.safe_extract(tar, member, tmp_path)
    assert (tmp_path / "ok/file").read_bytes() == b"hi"
    assert (tmp_path / "ok/file").stat().st_mode & 0o7777 == 0o755
    with _tar(("../escape", 0o644)) as tar, pytest.raises((BuildError, tarfile.FilterError)):
        for member in tar:
            buildfs.safe_extract(tar, member, tmp_path / "inner")
    assert not (tmp_path / "escape").exists()
