"""Hostile buildpack URLs (issue 17, hole 7): any app user may set BUILDPACK_URL. The clone runs in a
container as the build user, so the host's loopback (where etcd and the registry listen) is not where
it connects; ssh clones (which ran on the host with root's identity) and file:// URLs with a host part
are refused in one line; host paths only below DEIS_LOCAL_BUILDPACKS."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.buildpack_apps import commit_files
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mallory(platform: Harness) -> Key:
    return platform.add_user("mallory-url")  # one name per module: the platform is the session's


@pytest.fixture(scope="module")
def app(platform: Harness, mallory: Key) -> tuple[str, Path]:
    name = unique("bpurl")
    assert platform.ssh(mallory, "apps:create", name).returncode == 0
    work = platform.checkout("bp-static", name)
    (work / "index.html").unlink()
    commit_files(platform, work, {"README": "needs a buildpack\n"})
    return name, work


class Listener:
    """A TCP port on the host's loopback, as etcd's or the registry's is, counting who connects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(4096))
                except OSError:
                    self.seen.append(b"")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    lis = Listener()
    try:
        yield lis
    finally:
        lis.close()


def push_with(platform: Harness, key: Key, app: tuple[str, Path], url: str) -> list[str]:
    """Set BUILDPACK_URL, push; the push must be refused. Returns its error lines."""
    name, work = app
    r = platform.ssh(key, "config:set", "--app", name, f"BUILDPACK_URL={url}")
    assert r.returncode == 0, r.stderr
    r = platform.push(work, key)
    assert r.returncode != 0, r.stderr
    assert "internal error" not in r.stderr
    return [line.strip() for line in r.stderr.splitlines() if line.startswith("remote:  !     ")]


@pytest.mark.parametrize("scheme", ["http", "git"])
def test_a_clone_never_reaches_the_hosts_loopback(
    platform: Harness, mallory: Key, app: tuple[str, Path], listener: Listener, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{listener.port}/bp.git"
    errors = push_with(platform, mallory, app, url)
    assert errors[0].startswith(f"remote:  !     cannot fetch buildpack {url}: "), errors
    assert listener.seen == []  # the container's 127.0.0.1 is its own


def test_ssh_urls_are_refused_before_any_connection(
    platform: Harness, mallory: Key, app: tuple[str, Path], listener: Listener
) -> None:
    for url in (f"ssh://git@127.0.0.1:{listener.port}/bp.git", "git@127.0.0.1:bp.git"):
        errors = push_with(platform, mallory, app, url)
        assert "ssh clones are not supported (a build has no credentials); use https://" in errors[0], errors
    assert listener.seen == []


def test_file_urls_with_a_host_part_are_refused(
    platform: Harness, mallory: Key, app: tuple[str, Path], tmp_path: Path
) -> None:
    # git would clone /PATH from file://HOST/PATH while the platform checked HOST/PATH
    errors = push_with(platform, mallory, app, f"file://evil{tmp_path}")
    assert "a file:// URL names no host; write file:///PATH" in errors[0], errors


def test_host_paths_outside_the_allowed_directories_are_refused(
    platform: Harness, mallory: Key, app: tuple[str, Path]
) -> None:
    for url in ("/etc", "file:///etc", f"file://{platform.settings.state_dir}/repos"):
        errors = push_with(platform, mallory, app, url)
        assert "outside the directories allowed for local buildpacks (DEIS_LOCAL_BUILDPACKS)" in errors[0]
