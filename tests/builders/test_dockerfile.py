"""Reading Dockerfiles before they are built: instructions, heredocs, RUN --mount checks, bases."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import dockerfile
from core.errors import BuildError


def test_parse_joins_continuations_and_skips_comments() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nFROM a:1 AS one\n\nRUN echo a \\\n  # inside\n  && echo b\ncopy x /y\n"
    )
    found = dockerfile.parse(text)
    assert [(i.line, i.keyword, i.args) for i in found] == [
        (2, "FROM", "a:1 AS one"),
        (4, "RUN", "echo a && echo b"),
        (7, "COPY", "x /y"),
    ]
    assert found[1].raw == "RUN echo a \\\n  # inside\n  && echo b"


def test_escape_directive_changes_the_continuation() -> None:
    found = dockerfile.parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  /b\n")
    assert found[1].args == "dir c:\\ /b"


@pytest.mark.parametrize(
    "line",
    ["COPY <<EOF /srv/app.py", "RUN <<-'EOT' bash", 'ADD <<"X" /x', "RUN cat <<EOF > /f"],
)
def test_heredocs_get_one_line_saying_what_to_do(line: str) -> None:
    with pytest.raises(BuildError) as err:
        dockerfile.parse(f"FROM a\n{line}\nhello\nEOF\n")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("Dockerfile line 2: heredocs (")
    assert "COPY it" in str(err.value) and "printf" in str(err.value)


def test_shift_and_here_strings_are_not_heredocs() -> None:
    dockerfile.parse("FROM a\nRUN echo $((1<<3)) && cat <<< hi\n")


def test_cache_mounts_get_flat_ids(tmp_path: Path) -> None:
    text = "FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n"
    out = dockerfile.sanitize(text, tmp_path)
    flat = dockerfile.cache_id({"target": "/root/.cache"})
    assert out == f"FROM a\nRUN --mount=type=cache,target=/root/.cache,id={flat} pip install x\n"
    assert "/" not in flat and ".." not in flat


def test_a_given_cache_id_is_hashed_too(tmp_path: Path) -> None:
    out = dockerfile.sanitize(
        "FROM a\nRUN --mount=type=cache,id=../../etc,target=/x,sharing=locked ls\n", tmp_path
    )
    assert "../" not in out
    assert f"id={dockerfile.cache_id({'id': '../../etc'})}" in out
    assert "sharing=locked" in out


@pytest.mark.parametrize(
    ("mount", "why"),
    [
        ("type=cache,id=$X,target=/x", "variables are not expanded"),
        ("type=cache,from=builder,target=/x", "from=... is not supported"),
        ("type=cache,source=/etc,target=/x", "does not take source"),
        ("type=bind,from=builder,target=/x", "from=... is not supported"),
        ("type=bind,source=/,target=/x,rw", "read-only"),
        ("type=bind,source=../..,target=/x", "may not leave the build context"),
        ("type=ssh", "type=ssh is not supported"),
        ("type=secret,target=/x", "needs id=NAME"),
    ],
)
def test_dangerous_mounts_are_refused(tmp_path: Path, mount: str, why: str) -> None:
    with pytest.raises(BuildError, match="Dockerfile line 2") as err:
        dockerfile.sanitize(f"FROM a\nRUN --mount={mount} true\n", tmp_path)
    assert why in str(err.value)


def test_bind_source_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").symlink_to("/")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "up").symlink_to("../root")
    for source in ("root", "root/etc", "dir/up/etc"):
        with pytest.raises(BuildError, match="symlink"):
            dockerfile.sanitize(f"FROM a\nRUN --mount=type=bind,source={source},target=/h true\n", tmp_path)


def test_plain_bind_secret_and_tmpfs_mounts_pass_unchanged(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text("")
    text = (
        "FROM a\nRUN --mount=type=bind,source=uv.lock,target=/uv.lock "
        "--mount=type=secret,id=ca-bundle --mount=type=tmpfs,target=/t uv sync\n"
    )
    assert dockerfile.sanitize(text, tmp_path) == text


def test_run_security_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="--security"):
        dockerfile.sanitize("FROM a\nRUN --security=insecure true\n", tmp_path)


def test_base_images_skip_stages_and_scratch_and_expand_args() -> None:
    text = (
        "ARG BASE=deis/stack:bookworm\nARG PY\nFROM $BASE AS build\nFROM ${PY:-python:3.11}\n"
        "COPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=quay.io/x/y:1 /c /c\n"
        "FROM scratch\nFROM build\n"
    )
    assert dockerfile.base_images(text, {}) == ["deis/stack:bookworm", "python:3.11", "quay.io/x/y:1"]
    assert dockerfile.base_images(text, {"BASE": "other:2"})[0] == "other:2"
