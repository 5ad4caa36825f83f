"""Images made from Debian packages: the argv builders, mount clean-up, and the make path with a
stand-in for debootstrap (the real one takes a minute; `./platform up` runs it)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from appliance import services
from builders import engine, images
from core import dockercli
from core.errors import ServiceError
from core.output import Output
from core.settings import Settings


def quiet() -> Output:
    return Output(io.StringIO())


def test_stack_image_builders() -> None:
    root = Path("/var/lib/deis/stack-x/rootfs")
    assert images.debootstrap_argv(root) == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,ca-certificates",
        "bookworm",
        "/var/lib/deis/stack-x/rootfs",
    ]
    assert images.debootstrap_argv(root, "trixie", "http://deb.example/debian")[-2:] == [
        "/var/lib/deis/stack-x/rootfs",
        "http://deb.example/debian",
    ]
    assert images.tar_argv(root) == ["tar", "-C", "/var/lib/deis/stack-x/rootfs", "-c", "."]
    assert dockercli.import_("deis/stack:bookworm") == [
        "docker",
        "import",
        "-",
        "deis/stack:bookworm",
    ]


def test_mounts_under() -> None:
    mountinfo = (
        "22 1 0:21 / / rw - overlay overlay rw\n"
        "30 22 0:5 / /proc rw - proc proc rw\n"
        "41 22 0:40 / /var/lib/deis/stack-a/rootfs/proc rw - proc proc rw\n"
        "42 22 0:41 / /var/lib/deis/stack-a/rootfs/dev/pts rw - devpts devpts rw\n"
        "43 22 0:42 / /var/lib/deis/stack-a/rootfs/dev rw - tmpfs nodev rw\n"
        "44 22 0:43 / /var/lib/deis/stack-ab/rootfs/sys rw - sysfs sysfs rw\n"
        "45 22 0:44 / /var/lib/deis/stack-a/with\\040space rw - tmpfs t rw\n"
    )
    assert images.mounts_under(Path("/var/lib/deis/stack-a"), mountinfo) == [
        "/var/lib/deis/stack-a/rootfs/dev/pts",
        "/var/lib/deis/stack-a/rootfs/proc",
        "/var/lib/deis/stack-a/rootfs/dev",
        "/var/lib/deis/stack-a/with space",
    ]
    assert images.mounts_under(Path("/elsewhere"), mountinfo) == []


def test_ensure_stack_image_builds_imports_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole build path with a stand-in for debootstrap (the real one takes a minute; `up` runs it)."""
    if not services.docker_answers():
        pytest.skip("no docker daemon answers")
    import uuid

    import docker

    image = f"deis-test/stack-{uuid.uuid4().hex[:8]}:t"
    s = Settings(state_dir=tmp_path / "state", stack_image=image)
    stale = s.state_dir / f"{images.STACK_TMP_PREFIX}old"
    (stale / "rootfs").mkdir(parents=True)

    def fake_debootstrap(target: Path, *args: object) -> list[str]:
        return ["sh", "-c", 'mkdir -p "$1/etc" && echo stack > "$1/etc/hello"', "sh", str(target)]

    monkeypatch.setattr(images, "debootstrap_argv", fake_debootstrap)
    stream = io.StringIO()
    client = docker.from_env()
    try:
        assert images.ensure_stack_image(s, Output(stream)) is True
        assert f"-----> Building the stack image {image}" in stream.getvalue()
        assert f"-----> Importing it into docker as {image}" in stream.getvalue()
        assert engine.image_exists(image)
        assert images.ensure_stack_image(s, quiet()) is False  # present: nothing to do
        assert not list(s.state_dir.glob(f"{images.STACK_TMP_PREFIX}*"))  # temp and stale dirs gone
        assert "==> tar -C" in (s.log_dir / "stack.log").read_text()
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image, force=True)
        client.close()


def test_ensure_stack_image_reports_a_failed_debootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not services.docker_answers():
        pytest.skip("no docker daemon answers")
    s = Settings(state_dir=tmp_path / "state", stack_image="deis-test/never:t")
    monkeypatch.setattr(
        images, "debootstrap_argv", lambda target, *a: ["sh", "-c", "echo E: no mirror >&2; exit 1"]
    )
    with pytest.raises(
        ServiceError, match=r"debootstrap failed with status 1: E: no mirror \(see .*stack.log\)"
    ):
        images.ensure_stack_image(s, quiet())
    assert not list(s.state_dir.glob(f"{images.STACK_TMP_PREFIX}*"))
    assert not engine.image_exists("deis-test/never:t")
