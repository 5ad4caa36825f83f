"""Where a buildpack may come from, and its clone: in a container as the build user, with no
credentials (the argv compared exactly; one real clone of a local repository through the engine)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from builders import bpfetch, buildenv, buildnet, stacks
from core.errors import BuildError, ValidationError
from core.output import Output
from core.settings import Settings


def test_local_path_is_parsed_strictly() -> None:
    assert bpfetch.local_path("file:///srv/bp") == "/srv/bp"
    assert bpfetch.local_path("/srv/bp") == "/srv/bp"
    assert bpfetch.local_path("https://h/bp.git") is None
    for bad in ("file://host/abs", "file://localhost/srv/bp", "file://srv", "file:///a%2fb", "file:///a?b"):
        with pytest.raises(ValidationError):
            bpfetch.local_path(bad)


def test_local_buildpacks_only_from_allowed_directories(tmp_path: Path) -> None:
    allowed, state = tmp_path / "bps", tmp_path / "bps" / "state"
    (allowed / "mine").mkdir(parents=True)
    state.mkdir()
    assert bpfetch.check_local(f"file://{allowed / 'mine'}", [allowed], state) == allowed / "mine"
    assert bpfetch.check_local(str(allowed / "mine"), [allowed], state) == allowed / "mine"
    assert bpfetch.check_local("https://example.com/bp.git", [], state) is None  # not a host file
    (allowed / "escape").symlink_to("/etc")
    for bad in (
        str(state / "repos" / "other.git"),
        "/etc",
        f"file://{allowed}/../../etc",
        "/var/lib/deis",
        str(allowed / "escape"),  # a link out of the allowed directory
    ):
        with pytest.raises(BuildError, match="DEIS_LOCAL_BUILDPACKS"):
            bpfetch.check_local(bad, [allowed], state)
    with pytest.raises(BuildError):
        bpfetch.check_local(str(allowed / "mine"), [], state)  # nothing allowed by default


def test_fetch_argv_runs_the_clone_unprivileged_and_without_credentials(tmp_path: Path) -> None:
    s = Settings(
        state_dir=Path("/s"),
        build_ca_bundle=None,
        build_env=("PIP_INDEX_URL=https://user:token@mirror/simple", "https_proxy=http://proxy:3128"),
    )
    argv = bpfetch.fetch_argv(
        "deis-fetch-1", s, Path("/w/buildpack-00"), "https://h/bp.git", "v2", None, "deis-builds-x"
    )
    assert argv == [
        "docker", "run", "--rm", "--pull", "never", "--name", "deis-fetch-1",
        "--label", "io.deis.platform=/s", "--label", "io.deis.build=deis-fetch-1",
        "--memory", f"{2 << 30}b", "--network", "deis-builds-x",
        "--user", "64999:64999", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--pids-limit", "1024",
        "-v", "/w/buildpack-00:/buildpack", "-v", f"{bpfetch.FETCHER}:/builder/fetch:ro",
        "-e", "HOME=/tmp", "-e", "GIT_TERMINAL_PROMPT=0", "-e", "GIT_CONFIG_NOSYSTEM=1",
        "-e", "GIT_ALLOW_PROTOCOL=http:https:git:file", "-e", "https_proxy=http://proxy:3128",
        stacks.BUILDER_IMAGE, "/builder/fetch", "https://h/bp.git", "v2",
    ]  # fmt: skip
    assert not any("token" in a for a in argv)  # the compile's mirror credentials are not the clone's


def test_fetch_argv_of_a_local_repository_mounts_it_read_only(tmp_path: Path) -> None:
    s = Settings(state_dir=Path("/s"), build_ca_bundle=Path("/etc/ca.pem"))
    argv = bpfetch.fetch_argv("c", s, Path("/w/bp"), "file:///srv/bp", "", Path("/srv/bp"))
    ca = buildenv.CA_TARGET
    assert argv[argv.index("-v") :] == [
        "-v", "/w/bp:/buildpack", "-v", f"{bpfetch.FETCHER}:/builder/fetch:ro",
        "-v", f"/etc/ca.pem:{ca}:ro", "-v", "/srv/bp:/source:ro",
        "-e", "HOME=/tmp", "-e", "GIT_TERMINAL_PROMPT=0", "-e", "GIT_CONFIG_NOSYSTEM=1",
        "-e", "GIT_ALLOW_PROTOCOL=http:https:git:file",
        "-e", f"PIP_CERT={ca}", "-e", f"NODE_EXTRA_CA_CERTS={ca}", "-e", f"SSL_CERT_FILE={ca}",
        "-e", f"GIT_SSL_CAINFO={ca}", "-e", f"REQUESTS_CA_BUNDLE={ca}",
        stacks.BUILDER_IMAGE, "/builder/fetch", "file:///source", "",
    ]  # fmt: skip


def git(cwd: Path, *args: str) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.e2e
def test_a_clone_runs_as_the_build_user_in_a_container(tmp_path: Path) -> None:
    """A real clone of a local repository at a tag: its files are the build user's (a clone on the host
    as root would leave root's), and what was committed after the tag is not there."""
    repo = tmp_path / "allowed" / "bp"
    (repo / "bin").mkdir(parents=True)
    (repo / "bin" / "detect").write_text("#!/bin/sh\necho v1\n")
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1")
    (repo / "bin" / "detect").write_text("#!/bin/sh\necho v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    s = Settings(
        state_dir=tmp_path / "state", local_buildpacks=str(tmp_path / "allowed"), build_ca_bundle=None
    )
    (tmp_path / "work").mkdir()
    dest = tmp_path / "work" / "buildpack-00"
    try:
        clone_at_a_tag(s, repo, tmp_path, dest)
    finally:  # the clone made this throwaway platform's build network
        buildnet.remove_bridge(str(s.state_dir))


def clone_at_a_tag(s: Settings, repo: Path, tmp_path: Path, dest: Path) -> None:
    got = bpfetch.fetch(s, "bp", f"file://{repo}", "v1", dest, Output(open("/dev/null", "w")))  # noqa: SIM115
    assert got == dest
    assert (dest / "bin" / "detect").read_text() == "#!/bin/sh\necho v1\n"
    assert {p.lstat().st_uid for p in dest.rglob("*")} == {s.build_uid}
    with pytest.raises(BuildError, match=r"cannot fetch buildpack bp: .*nope"):
        bpfetch.fetch(
            s,
            "bp",
            f"file://{repo}",
            "nope",
            tmp_path / "work" / "buildpack-01",
            Output(io.StringIO()),
        )
