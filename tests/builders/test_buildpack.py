"""The pure parts of buildpack builds, the built-in buildpacks' bin/detect and bin/release on the host,
and the runner's entry point."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builders import buildenv, buildpack, stacks
from builders.buildpack import BUILTIN_DIR, Buildpack
from core.errors import BuildError, ValidationError
from core.settings import Settings
from scheduler import release_phase, rollout
from tests.harness import APPS


def test_parse_buildpack_builtin_url_path_and_ref() -> None:
    assert buildpack.parse_buildpack("python") == Buildpack("python", path=BUILTIN_DIR / "python")
    assert buildpack.parse_buildpack("heroku/nodejs").path == BUILTIN_DIR / "nodejs"
    assert buildpack.parse_buildpack("https://git.example.com/bp.git#v2") == Buildpack(
        "https://git.example.com/bp.git#v2", url="https://git.example.com/bp.git", ref="v2"
    )
    assert buildpack.parse_buildpack(" /srv/bp ") == Buildpack("/srv/bp", url="/srv/bp")
    assert buildpack.parse_buildpack("file:///srv/bp#abc123").ref == "abc123"


@pytest.mark.parametrize("text", ["", "#v1", "relative/path", "ftp://x/bp", "/srv/bp#--upload-pack=x"])
def test_parse_buildpack_refuses(text: str) -> None:
    with pytest.raises(ValidationError):
        buildpack.parse_buildpack(text)


def test_choose_buildpack_url_then_buildpacks_file_then_builtins() -> None:
    mode, chosen = buildpack.choose({"BUILDPACK_URL": "/srv/one"}, "python\n")
    assert (mode, [b.name for b in chosen]) == ("all", ["/srv/one"])
    mode, chosen = buildpack.choose({}, "# several\nnodejs\n\nhttps://h/bp.git#main\n")
    assert (mode, [b.name for b in chosen]) == ("all", ["nodejs", "https://h/bp.git#main"])
    mode, chosen = buildpack.choose({"BUILDPACK_URL": " "}, "\n# empty\n")
    assert (mode, [b.name for b in chosen]) == ("auto", ["python", "nodejs", "static", "procfile"])


def test_git_argvs() -> None:
    dest = Path("/w/buildpack-00")
    assert buildpack.clone_argv("file:///bp", dest) == [
        "git",
        "clone",
        "--quiet",
        "--",
        "file:///bp",
        str(dest),
    ]
    assert buildpack.checkout_argv(dest, "v1") == [
        "git", "-C", str(dest), "checkout", "--quiet", "--detach", "v1", "--",
    ]  # fmt: skip


def test_builder_argv() -> None:
    work, cache = Path("/s/builds/build-x"), Path("/s/cache/app")
    argv = buildpack.builder_argv(
        "deis-build-app-1",
        "img",
        work,
        cache,
        [Path("/bp/a"), Path("/bp/b")],
        ["a", "b"],
        "all",
        "c0ffee",
        "/s",
    )
    assert argv == [
        "docker", "run", "--rm", "--pull", "never", "--name", "deis-build-app-1",
        "--label", "io.deis.platform=/s", "--label", "io.deis.build=deis-build-app-1",
        "-v", "/s/builds/build-x/app:/app", "-v", "/s/cache/app:/cache",
        "-v", "/s/builds/build-x/env:/env:ro",
        "-v", "/s/builds/build-x/out:/out", "-v", f"{buildpack.DRIVER}:/builder/build:ro",
        "-v", "/bp/a:/buildpacks/00:ro", "-v", "/bp/b:/buildpacks/01:ro",
        "-e", "STACK=bookworm", "-e", "SOURCE_VERSION=c0ffee",
        "img", "/builder/build", "all", "a", "b",
    ]  # fmt: skip


def test_builder_argv_with_the_build_ca_bundle_and_env_file() -> None:
    argv = buildpack.builder_argv(
        "c", "img", Path("/w"), Path("/c"), [], [], "auto", "sha", "/s",
        ca_bundle="/etc/ssl/certs/ca-certificates.crt", env_file="/w/build.env",
    )  # fmt: skip
    ca = buildenv.CA_TARGET
    driver = argv.index(f"{buildpack.DRIVER}:/builder/build:ro")
    assert argv[driver:] == [
        f"{buildpack.DRIVER}:/builder/build:ro",
        "-v", f"/etc/ssl/certs/ca-certificates.crt:{ca}:ro",
        "--env-file", "/w/build.env",
        "-e", "STACK=bookworm", "-e", "SOURCE_VERSION=sha",
        "-e", f"PIP_CERT={ca}", "-e", f"NODE_EXTRA_CA_CERTS={ca}", "-e", f"SSL_CERT_FILE={ca}",
        "-e", f"GIT_SSL_CAINFO={ca}", "-e", f"REQUESTS_CA_BUNDLE={ca}",
        "img", "/builder/build", "auto",
    ]  # fmt: skip


def test_build_env_file_and_host_git_env(tmp_path: Path) -> None:
    s = Settings(
        state_dir=tmp_path,
        build_ca_bundle=Path("/etc/my-ca.pem"),
        build_env=("PIP_INDEX_URL=https://mirror/simple", "https_proxy=http://proxy:3128"),
    )
    path = buildenv.write_env_file(s, tmp_path / "build.env")
    assert path is not None
    assert path.read_text() == "PIP_INDEX_URL=https://mirror/simple\nhttps_proxy=http://proxy:3128\n"
    assert path.stat().st_mode & 0o777 == 0o600
    env = buildenv.host_git_env(s, {"GIT_DIR": ".", "GIT_QUARANTINE_PATH": "q", "PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSL_CAINFO": "/etc/my-ca.pem",
        "https_proxy": "http://proxy:3128",
    }
    s.build_env, s.build_ca_bundle = (), None
    assert buildenv.write_env_file(s, tmp_path / "none.env") is None
    assert buildenv.host_git_env(s, {}) == {"GIT_TERMINAL_PROMPT": "0"}


def test_env_files_keep_exact_bytes() -> None:
    config = {"A": "two words\nand a line", "B": "$(not run) 'q' \"d\"", "C": "", "D": "é"}
    assert buildpack.env_files(config) == {
        "A": b"two words\nand a line",
        "B": b"$(not run) 'q' \"d\"",
        "C": b"",
        "D": "é".encode(),
    }


def test_process_types_merge_defaults_and_procfile() -> None:
    releases = [
        "---\ndefault_process_types:\n  web: python3 app.py\n  clock: tick\n",
        "--- {}\n",
        "",
        "---\naddons: []\ndefault_process_types:\n  web: 'npm start'\n",
    ]
    assert buildpack.process_types(releases, {"worker": "work"}) == {
        "web": "npm start",
        "clock": "tick",
        "worker": "work",
    }
    assert buildpack.process_types(releases, {"web": "mine"})["web"] == "mine"


@pytest.mark.parametrize("text", ["web: [unclosed", "- a list", "default_process_types: [web]"])
def test_process_types_refuse_bad_release_yaml(text: str) -> None:
    with pytest.raises(BuildError):
        buildpack.process_types([text], {})


def test_procfile_text_and_slug_dockerfile() -> None:
    assert buildpack.procfile_text({"web": "a b", "release": "m"}) == "release: m\nweb: a b\n"
    assert buildpack.slug_dockerfile("deis/slugrunner:bookworm") == (
        "FROM deis/slugrunner:bookworm\nADD slug.tgz /app\n"
    )


def test_human_size() -> None:
    assert [buildpack.human_size(n) for n in (512, 2048, 1536 * 1024, 3 << 30)] == [
        "512B",
        "2K",
        "1.5M",
        "3G",
    ]


def test_purge_cache(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    assert buildpack.purge_cache(s, "app") == 0
    (buildpack.cache_dir(s, "app") / "python").mkdir(parents=True)
    (buildpack.cache_dir(s, "app") / "python" / "key").write_text("1234")
    assert buildpack.purge_cache(s, "app") == 4
    assert not buildpack.cache_dir(s, "app").exists()


def test_stack_specs_have_digests_that_follow_their_content() -> None:
    runner, builder = stacks.runner_spec(), stacks.builder_spec()
    assert runner.image == stacks.RUNNER_IMAGE and builder.image == stacks.BUILDER_IMAGE
    assert 'ENTRYPOINT ["/runner/init"]' in runner.changes
    assert "npm" in builder.apt_packages and "npm" not in runner.packages + runner.apt_packages
    assert runner.digest != builder.digest and len(runner.digest) == 16
    assert stacks.runner_spec().digest == runner.digest  # stable


# -- the built-in buildpacks, run on the host ----------------------------------------------------


def run_bin(name: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILTIN_DIR / name / "bin" / script), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("fixture", "detected"),
    [
        ("bp-python", ["python", "procfile"]),
        ("bp-python-dep", ["python", "procfile"]),
        ("bp-node", ["nodejs"]),
        ("bp-static", ["static"]),
        ("bp-procfile", ["procfile"]),
        ("hello", []),
    ],
)
def test_builtin_detect(fixture: str, detected: list[str]) -> None:
    found = [n for n in buildpack.BUILTIN_ORDER if run_bin(n, "detect", str(APPS / fixture)).returncode == 0]
    assert found == detected


def test_builtin_detect_prints_the_name() -> None:
    assert run_bin("python", "detect", str(APPS / "bp-python")).stdout == "Python\n"


def test_static_release(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("x")
    r = run_bin("static", "release", str(tmp_path))
    assert buildpack.process_types([r.stdout], {}) == {
        "web": "python3 -m http.server --bind 0.0.0.0 --directory /app/public $PORT"
    }


# -- the runner's `start TYPE` and the release phase's container ---------------------------------


def test_runner_init_starts_a_procfile_type(tmp_path: Path) -> None:
    """/runner/init with /app replaced by a temp dir: profile.d sourced, the type's command run."""
    app = tmp_path / "app"
    (app / ".profile.d").mkdir(parents=True)
    (app / ".profile.d" / "a.sh").write_text('export FROM_PROFILE="yes $DYNO"\n')
    (app / "Procfile").write_text('web: echo "web $FROM_PROFILE"\nweb2: echo wrong\n')
    init = stacks.RUNNER_INIT.read_text().replace("/app", str(app))
    script = tmp_path / "init"
    script.write_text(init)
    script.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "DYNO": "web.1"}
    r = subprocess.run([str(script), "start", "web"], capture_output=True, text=True, env=env, check=False)
    assert (r.returncode, r.stdout) == (0, "web yes web.1\n")
    r = subprocess.run([str(script), "start", "nope"], capture_output=True, text=True, env=env, check=False)
    assert (r.returncode, r.stderr) == (1, "no process type 'nope' in the Procfile\n")
    r = subprocess.run(
        [str(script), "sh", "-c", "echo $HOME"], capture_output=True, text=True, env=env, check=False
    )
    assert r.stdout == f"{app}\n"


def deployment(**kw: object) -> rollout.Deployment:
    base: dict[str, object] = {
        "app": "a",
        "version": 3,
        "image": "r/a:git-1",
        "procfile": {"web": "python3 app.py"},
        "port": 5000,
        "config": {"K": "v"},
        "formation": {"web": 1, "release": 2},
    }
    return rollout.Deployment(**{**base, **kw})  # type: ignore[arg-type]


def test_runner_builds_start_through_the_runner_and_release_is_never_scaled() -> None:
    specs = rollout.plan(deployment(runner=True))
    assert [(str(s.name), s.command) for s in specs] == [("a_v3.web.1", ["start", "web"])]
    specs = rollout.plan(deployment())
    assert [s.command for s in specs] == [["/bin/sh", "-c", "python3 app.py"]]


def test_release_spec() -> None:
    assert release_phase.release_spec(deployment()) is None
    spec = release_phase.release_spec(deployment(release_command="migrate", runner=True))
    assert spec is not None
    assert (str(spec.name), spec.command, spec.port) == ("a_v3.release.1", ["start", "release"], None)
    assert spec.env["DYNO"] == "release.1" and spec.env["K"] == "v" and spec.env["DEIS_RELEASE"] == "v3"
    spec = release_phase.release_spec(deployment(release_command="migrate"))
    assert spec is not None and spec.command == ["/bin/sh", "-c", "migrate"]


def test_local_buildpacks_only_from_allowed_directories(tmp_path: Path) -> None:
    from builders.buildpack import check_local
    from core.errors import BuildError

    allowed, state = tmp_path / "bps", tmp_path / "bps" / "state"
    (allowed / "mine").mkdir(parents=True)
    state.mkdir()
    check_local(f"file://{allowed / 'mine'}", [allowed], state)
    check_local(str(allowed / "mine"), [allowed], state)
    check_local("https://example.com/bp.git", [], state)  # remote URLs are not host files
    for bad in (str(state / "repos" / "other.git"), "/etc", f"file://{allowed}/../../etc", "/var/lib/deis"):
        with pytest.raises(BuildError, match="DEIS_LOCAL_BUILDPACKS"):
            check_local(bad, [allowed], state)
    with pytest.raises(BuildError):
        check_local(str(allowed / "mine"), [], state)  # nothing allowed by default
