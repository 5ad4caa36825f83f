"""The build runner with real processes (no buildah needed): streaming, the held-back error, the
time limit and a hang-up, each of which must kill the whole process group."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from builders import dockerbuild
from core.errors import BuildError
from core.output import Output

ENV = {"PATH": os.environ["PATH"]}


def test_output_streams_and_the_error_comes_last(tmp_path: Path) -> None:
    buf = io.StringIO()
    script = "echo 'STEP 1/2: FROM a'; echo 'Error: building at STEP \"RUN x\": exit status 3' >&2; exit 1"
    with pytest.raises(BuildError) as err:
        dockerbuild.stream(["sh", "-c", script], ENV, Output(buf), timeout=30)
    assert str(err.value) == 'Dockerfile build failed: building at STEP "RUN x": exit status 3'
    assert buf.getvalue() == "       STEP 1/2: FROM a\n"  # the error is not shown twice


def test_a_silent_build_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    with pytest.raises(BuildError, match="longer than 1s"):
        dockerbuild.stream(["sh", "-c", script], ENV, Output(io.StringIO()), timeout=1)
    assert time.monotonic() - started < 5
    assert gone(int(pidfile.read_text()))  # the grandchild went with the group


class GoneAfter(io.StringIO):
    """A pusher that hangs up after `n` writes (as the deploy socket's relay raises)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        return super().write(text)


def test_a_hang_up_kills_a_silent_build_at_once(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        dockerbuild.stream(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], ENV, Output(GoneAfter(0)), 60)
    assert time.monotonic() - started < 5
    assert gone(int(pidfile.read_text()))


def gone(pid: int) -> bool:
    """A killed process dies when next scheduled, not when kill() returns: allow it a moment."""
    deadline = time.monotonic() + 2
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not alive(pid)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_purge_cache_empties_the_cache_and_forgets_the_last_inputs(tmp_path: Path) -> None:
    from core.settings import Settings

    s = Settings(state_dir=tmp_path)
    cache = dockerbuild.cache_dir(s, "app") / "buildah-cache" / "c1"
    cache.mkdir(parents=True)
    (cache / "f").write_bytes(b"1234")
    (cache / "link").symlink_to("/etc/passwd")
    last = dockerbuild.last_file(s, "app")
    last.parent.mkdir(parents=True)
    last.write_text("{}")
    assert dockerbuild.purge_cache(s, "app") == 4
    assert not cache.exists() and not last.exists()
    assert Path("/etc/passwd").exists()
    assert dockerbuild.purge_cache(s, "app") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root")
def test_a_link_left_behind_is_reaped() -> None:
    """A link whose appliance died mid-build (no teardown): found by its rules' comment, removed."""
    import subprocess

    from builders import buildnet

    subnet = "10.213.0.0/16"
    link = buildnet.allocate(subnet)
    applied = buildnet.rules(link, [], [], "FORWARD")
    for argv in buildnet.setup(link):
        subprocess.run(argv, check=True, capture_output=True)
    restore = buildnet.restore_script(applied, insert=True)
    subprocess.run(buildnet.RESTORE, input=restore, text=True, check=True, capture_output=True)

    def saved() -> str:
        return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout

    assert link.name in saved()
    mine = {link.name}  # never another build's link (one may be running beside this test)
    assert buildnet.reap(subnet, older_than=3600, only=mine) == []  # too young to be stale
    assert buildnet.reap(subnet, older_than=0, only=mine) == [link.name]
    assert link.name not in saved()
    assert not link.path.exists()
    assert not Path(f"/sys/class/net/{link.host_if}").exists()
