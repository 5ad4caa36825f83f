"""The pure parts of buildpack builds, the built-in buildpacks' bin/detect and bin/release on the host,
and the runner's entry point."""

from __future__ import annotations

import re
import subprocess
import tarfile
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


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected a git URL or path"),
        ("#v1", "expected a git URL or path"),
        ("relative/path", "use https://, http://, git://, file:///PATH or an absolute path"),
        ("ftp://x/bp", "use https://, http://, git://"),
        ("ext::sh -c touch% /tmp/pwned", "use https://, http://, git://"),
        ("/srv/bp#--upload-pack=x", "invalid buildpack ref"),
        ("ssh://git@github.com/x/bp.git", "ssh clones are not supported"),
        ("git@github.com:x/bp.git", "ssh clones are not supported"),
        ("file://evil.example.com/srv/bp", "a file:// URL names no host; write file:///PATH"),
        ("file://localhost/srv/bp", "a file:// URL names no host"),
        ("file://srv/bp", "a file:// URL names no host"),
        ("file:///srv/%2e%2e/etc", "without % escapes"),
        ("https:///bp.git", "the URL names no host"),
    ],
)
def test_parse_buildpack_refuses(text: str, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)) as caught:
        buildpack.parse_buildpack(text)
    assert "\n" not in str(caught.value)


def test_parse_buildpack_takes_the_remote_schemes_and_local_paths() -> None:
    for url in ("https://h/bp.git", "http://h:8080/bp", "git://h/bp.git", "file:///srv/bp", "/srv/bp"):
        assert buildpack.parse_buildpack(url + "#v1") == Buildpack(url + "#v1", url=url, ref="v1")


def test_choose_buildpack_url_then_buildpacks_file_then_builtins() -> None:
    mode, chosen = buildpack.choose({"BUILDPACK_URL": "/srv/one"}, "python\n")
    assert (mode, [b.name for b in chosen]) == ("all", ["/srv/one"])
    mode, chosen = buildpack.choose({}, "# several\nnodejs\n\nhttps://h/bp.git#main\n")
    assert (mode, [b.name for b in chosen]) == ("all", ["nodejs", "https://h/bp.git#main"])
    mode, chosen = buildpack.choose({"BUILDPACK_URL": " "}, "\n# empty\n")
    assert (mode, [b.name for b in chosen]) == ("auto", ["python", "nodejs", "static", "procfile"])


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
        pids_limit=512,
        memory=1 << 30,
        network="deis-builds-x",
    )
    assert argv == [
        "docker", "run", "--rm", "--pull", "never", "--name", "deis-build-app-1",
        "--label", "io.deis.platform=/s", "--label", "io.deis.build=deis-build-app-1",
        "--memory", f"{1 << 30}b", "--network", "deis-builds-x",
        # the driver as root with only the capabilities to become the build user, which runs the buildpacks
        "--user", "0:0", "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID",
        "--security-opt", "no-new-privileges", "--pids-limit", "512",
        "-v", "/s/builds/build-x/app:/app", "-v", "/s/cache/app:/cache",
        "-v", "/s/builds/build-x/env:/env:ro",
        "-v", "/s/builds/build-x/out:/out", "-v", f"{buildpack.DRIVER}:/builder/build:ro",
        "-v", "/bp/a:/buildpacks/00:ro", "-v", "/bp/b:/buildpacks/01:ro",
        "-e", "STACK=bookworm", "-e", "SOURCE_VERSION=c0ffee", "-e", "BUILD_UID=64999",
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
        "-e", "STACK=bookworm", "-e", "SOURCE_VERSION=sha", "-e", "BUILD_UID=64999",
        "-e", f"PIP_CERT={ca}", "-e", f"NODE_EXTRA_CA_CERTS={ca}", "-e", f"SSL_CERT_FILE={ca}",
        "-e", f"GIT_SSL_CAINFO={ca}", "-e", f"REQUESTS_CA_BUNDLE={ca}",
        "img", "/builder/build", "auto",
    ]  # fmt: skip


def test_build_env_file_and_the_clones_proxy_env(tmp_path: Path) -> None:
    s = Settings(
        state_dir=tmp_path,
        build_ca_bundle=Path("/etc/my-ca.pem"),
        build_env=("PIP_INDEX_URL=https://mirror/simple", "https_proxy=http://proxy:3128"),
    )
    path = buildenv.write_env_file(s, tmp_path / "build.env")
    assert path is not None
    assert path.read_text() == "PIP_INDEX_URL=https://mirror/simple\nhttps_proxy=http://proxy:3128\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert buildenv.proxy_env(s) == {"https_proxy": "http://proxy:3128"}  # no mirror token
    s.build_env, s.build_ca_bundle = (), None
    assert buildenv.write_env_file(s, tmp_path / "none.env") is None
    assert buildenv.proxy_env(s) == {}


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


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web: [unclosed", "bin/release printed invalid YAML"),
        ("- a list", "not a mapping"),
        ("default_process_types: [web]", "default_process_types is not a mapping"),
        ("Config_Vars: {}", "invalid key 'Config_Vars'"),
        ("default_process_types:\n  ../../etc: x\n", "invalid process type '../../etc'"),
        ("default_process_types:\n  WEB: x\n", "invalid process type 'WEB'"),
        ("default_process_types:\n  7: x\n", "invalid process type '7'"),
        ("default_process_types:\n  web: |\n    a\n    worker: evil\n", "not one line of text"),
        ("default_process_types:\n  web: [a, b]\n", "not one line of text"),
        ("default_process_types:\n  web: ''\n", "not one line of text"),
        ("[" * 5000, "bin/release printed invalid YAML"),  # nested past Python's recursion limit
    ],
)
def test_process_types_refuse_bad_release_yaml(text: str, says: str) -> None:
    with pytest.raises(BuildError, match=re.escape(says)) as caught:
        buildpack.process_types([text], {})
    assert "\n" not in str(caught.value)


def test_slug_tar_argv_leaves_the_builds_procfile_out_and_adds_the_merged_one() -> None:
    assert buildpack.slug_tar_argv(Path("/w")) == [
        "tar", "-czf", "/w/slug.tgz", "--owner=0", "--group=0", "--numeric-owner",
        "--mode=ug-s", "--anchored", "--exclude=./Procfile",
        "-C", "/w/app", ".", "-C", "/w/meta", "Procfile",
    ]  # fmt: skip


def test_the_slug_never_carries_the_builds_procfile_or_a_setuid_bit(tmp_path: Path) -> None:
    """Run the real tar over a tree a hostile build left: a symlinked Procfile, a setuid file."""
    (tmp_path / "app" / "lib").mkdir(parents=True)
    (tmp_path / "meta").mkdir()
    (tmp_path / "app" / "Procfile").symlink_to("/etc/passwd")
    (tmp_path / "app" / "lib" / "Procfile").write_text("a file of the app's own\n")
    (tmp_path / "app" / "suid").write_text("#!/bin/sh\n")
    (tmp_path / "app" / "suid").chmod(0o6755)
    (tmp_path / "meta" / "Procfile").write_text("web: run\n")
    subprocess.run(buildpack.slug_tar_argv(tmp_path), check=True)
    with tarfile.open(tmp_path / "slug.tgz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["Procfile"].isfile() and "./Procfile" not in members
        assert tar.extractfile("Procfile").read() == b"web: run\n"  # type: ignore[union-attr]
        assert "./lib/Procfile" in members
    assert members["./suid"].mode == 0o755 and members["./suid"].uid == 0


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
