"""Images made from Debian packages with extra files, import-time changes and a digest label (the path
the slugbuilder and slugrunner images take), with a stand-in for debootstrap (the real one takes
minutes; `./platform up` runs it)."""

from __future__ import annotations

import contextlib
import io
import uuid
from pathlib import Path

import docker
import pytest

from appliance import services
from builders import engine, images
from core import dockercli
from core.output import Output
from core.settings import Settings


def test_debootstrap_argv_takes_the_package_list() -> None:
    assert images.debootstrap_argv(Path("/t"), packages=("python3", "npm")) == [
        "debootstrap", "--variant=minbase", "--include=python3,npm", "bookworm", "/t",
    ]  # fmt: skip
    assert dockercli.import_("i:t", ('ENTRYPOINT ["/x"]', "WORKDIR /app")) == [
        "docker", "import", "--change", 'ENTRYPOINT ["/x"]', "--change", "WORKDIR /app", "-", "i:t",
    ]  # fmt: skip


def test_image_with_prepare_changes_and_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not services.docker_answers():
        pytest.skip("no docker daemon answers")
    image = f"deis-test/runner-{uuid.uuid4().hex[:8]}:t"
    s = Settings(state_dir=tmp_path / "state")
    seen: list[tuple[str, ...]] = []

    def fake_debootstrap(
        target: Path, suite: str, mirror: str | None, packages: tuple[str, ...]
    ) -> list[str]:
        seen.append(packages)
        return ["sh", "-c", 'mkdir -p "$1/etc" && echo stack > "$1/etc/hello"', "sh", str(target)]

    def prepare(root: Path) -> None:
        (root / "runner").mkdir()
        (root / "runner" / "init").write_text("#!/bin/sh\n")

    monkeypatch.setattr(images, "debootstrap_argv", fake_debootstrap)
    spec = images.DebootstrapImage(
        image,
        ("python3",),
        changes=('ENTRYPOINT ["/runner/init"]',),
        prepare=prepare,
        label="testrunner",
        digest="d1",
    )
    stream = io.StringIO()
    client = docker.from_env()
    try:
        assert images.ensure_debootstrap_image(s, Output(stream), spec) is True
        assert f"-----> Building the testrunner image {image}" in stream.getvalue()
        config = client.images.get(image).attrs["Config"]
        assert config["Entrypoint"] == ["/runner/init"]
        assert config["Labels"][images.DIGEST_LABEL] == "d1"
        assert images.ensure_debootstrap_image(s, Output(io.StringIO()), spec) is False  # current
        changed = images.DebootstrapImage(image, ("python3", "npm"), label="testrunner", digest="d2")
        assert images.ensure_debootstrap_image(s, Output(io.StringIO()), changed) is True  # stale: remade
        assert seen == [("python3",), ("python3", "npm")]
        assert engine.image_label(image, images.DIGEST_LABEL) == "d2"
        assert not list(s.state_dir.glob("testrunner-build-*"))
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image, force=True)
        client.close()


def test_admin_stacks_build_command_and_ssh_commands_are_registered() -> None:
    from gitserver import admin
    from gitserver.commands import registry

    args = admin.parser().parse_args(["stacks:build", "--force"])
    assert args.func is admin.cmd_stacks_build and args.force is True
    assert registry.lookup("builds:purge-cache").examples
    assert registry.lookup("buildpacks").examples
