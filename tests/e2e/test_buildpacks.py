"""Buildpack builds end to end: apps without a Dockerfile, pushed with stock git, built in the
slugbuilder, run on the slugrunner, routed by nginx. Real docker, registry, etcd. These apps need no
registry (their dependencies are vendored); test_buildpacks_online.py pushes apps that do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from tests.e2e.buildpack_apps import commit_files, python_dep_checkout
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

RELEASE_LINE = 'release: echo "release phase of $DEIS_RELEASE with GREETING=$GREETING"\n'


def remote_ref(h: Harness, work: Path, key: Key) -> str | None:
    out = h.git(work, "ls-remote", "deis", "refs/heads/master", key=key).stdout.split()
    return out[0] if out else None


def image_of(container: str) -> str:
    return str(docker.from_env().containers.get(container).attrs["Config"]["Image"])


def pushed(h: Harness, work: Path, key: Key) -> str:
    r = h.push(work, key)
    assert r.returncode == 0, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def py_app(platform: Harness, admin: Key) -> tuple[str, Path, str]:
    """The stdlib-only Python app with a release phase, deployed once."""
    app = unique("bppy")
    work = platform.checkout("bp-python", app)
    commit_files(platform, work, {"Procfile": "web: python3 app.py\n" + RELEASE_LINE}, "release phase")
    return app, work, pushed(platform, work, admin)


def test_python_stdlib_app_builds_with_the_python_buildpack(platform: Harness, py_app) -> None:
    app, _work, out = py_app
    assert "remote: -----> Python app detected" in out
    assert "remote: -----> No dependencies to install (requirements.txt is empty)" in out
    assert "remote:        Procfile declares types -> release, web" in out
    assert "remote: -----> Compiled slug size is " in out
    assert f"remote: -----> done, {app}:v2 deployed" in out
    assert platform.get(app) == (200, "hello from python stdlib\n")
    # `release` is a phase, never a scaled process; web starts through the runner's `start web`
    assert platform.containers(app) == [f"{app}_v2.web.1"]
    c = docker.from_env().containers.get(f"{app}_v2.web.1")
    assert c.attrs["Config"]["Cmd"] == ["start", "web"]
    assert c.attrs["Config"]["Entrypoint"] == ["/runner/init"]


def test_release_phase_runs_once_per_release(platform: Harness, admin: Key, py_app) -> None:
    app, _work, out = py_app
    assert out.count("release phase of v2 with GREETING=") == 1
    assert "remote: -----> Running release command: echo" in out
    assert out.index("release phase of v2") < out.index("-----> Launching")
    r = platform.ssh(admin, "config:set", "--app", app, "GREETING=hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("release phase of v3 with GREETING=hi") == 1
    assert platform.get(app) == (200, "hello from python stdlib hi\n")


def test_failing_release_phase_aborts_the_deploy(platform: Harness, admin: Key, py_app) -> None:
    app, work, _ = py_app
    before, serving, names = remote_ref(platform, work, admin), platform.get(app), platform.containers(app)
    commit_files(
        platform,
        work,
        {"Procfile": "web: python3 app.py\nrelease: echo migrating the database; exit 3\n"},
        "failing release phase",
    )
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "remote:        migrating the database" in r.stderr
    assert "the release command failed (exit status 3)" in r.stderr
    assert remote_ref(platform, work, admin) == before
    assert platform.get(app) == serving
    assert platform.containers(app) == names
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")


def test_failing_compile_is_rejected_and_old_release_keeps_serving(
    platform: Harness, admin: Key, py_app
) -> None:
    app, work, _ = py_app
    before, serving = remote_ref(platform, work, admin), platform.get(app)
    commit_files(platform, work, {"requirements.txt": "not-vendored-anywhere==1.0\n"}, "missing dependency")
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "not-vendored-anywhere" in r.stderr  # pip's own output was streamed
    assert (
        "python: pip could not install the dependencies from requirements.txt (see its output above)"
    ) in r.stderr
    assert "pre-receive hook declined" in r.stderr
    assert remote_ref(platform, work, admin) == before
    assert platform.get(app) == serving
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")


def test_python_app_with_a_vendored_wheel_and_the_build_cache(platform: Harness, admin: Key) -> None:
    app = unique("bpdep")
    work = python_dep_checkout(platform, app)
    out = pushed(platform, work, admin)
    assert "remote: -----> Installing dependencies from requirements.txt with pip" in out
    assert "Successfully installed greeting-1.0" in out
    assert platform.get(app) == (200, "hello from python-dep greeting-1.0\n")

    platform.commit_change(work, "message.txt", "hello again\n")
    out = pushed(platform, work, admin)
    assert "remote: -----> Restoring cached dependencies (requirements unchanged)" in out
    assert platform.get(app) == (200, "hello again greeting-1.0\n")

    r = platform.ssh(admin, "builds:purge-cache", "--app", app)
    assert r.returncode == 0, r.stderr
    assert f"-----> Build cache of {app} purged" in r.stdout
    platform.commit_change(work, "message.txt", "hello after the purge\n")
    out = pushed(platform, work, admin)
    assert "remote: -----> Installing dependencies from requirements.txt with pip" in out


def test_node_app(platform: Harness, admin: Key) -> None:
    app = unique("bpnode")
    work = platform.checkout("bp-node", app)
    out = pushed(platform, work, admin)
    assert "remote: -----> Node.js app detected" in out
    assert "remote: -----> Installing dependencies with npm install (npm " in out
    assert "remote:        Default types for buildpack -> web" in out
    assert platform.get(app) == (200, "hello from node greet-1.0 production\n")


def test_static_site(platform: Harness, admin: Key) -> None:
    app = unique("bpstatic")
    out = pushed(platform, platform.checkout("bp-static", app), admin)
    assert "remote: -----> Static app detected" in out
    status, body = platform.get(app)
    assert status == 200 and "<h1>hello from a static site</h1>" in body


def test_procfile_only_app_with_a_worker(platform: Harness, admin: Key) -> None:
    app = unique("bpproc")
    out = pushed(platform, platform.checkout("bp-procfile", app), admin)
    assert "remote: -----> Procfile-only app detected" in out
    assert "remote:        Procfile declares types -> web, worker" in out
    assert platform.get(app, "/hello.txt") == (200, "hello from the Procfile\n")
    # The worker type starts through the runner too (scaling is another command's business).
    r = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-e",
            "DYNO=worker.1",
            "-e",
            "GREETING=a b",
            image_of(f"{app}_v2.web.1"),
            "start",
            "worker",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (r.returncode, r.stdout) == (0, "worker started as worker.1 with GREETING=a b\n"), r.stderr


def test_custom_buildpack_from_a_local_git_repo(platform: Harness, admin: Key, tmp_path: Path) -> None:
    bp = tmp_path / "buildpack"
    scripts = {
        "bin/detect": "#!/bin/sh\necho Custom\n",
        # ENV_DIR holds each config var's exact bytes; the cache dir is writable and kept
        "bin/compile": '#!/bin/sh\nset -e\ncp "$3/MESSAGE" "$1/message.txt"\nls "$3" > "$1/env-files.txt"\n'
        'echo "-----> Custom compile done"\n',
        "bin/release": "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n"
        "  web: python3 -m http.server --bind 0.0.0.0 $PORT\\n'\n",
    }
    bp.mkdir()
    platform.git(bp, "init", "-q", "-b", "master")
    commit_files(platform, bp, scripts, "a buildpack")
    for path in scripts:
        (bp / path).chmod(0o755)
    platform.git(bp, "add", "-A")
    platform.git(bp, "commit", "-q", "-m", "executable")
    platform.git(bp, "tag", "v1")
    commit_files(platform, bp, {"bin/compile": "#!/bin/sh\necho broken on master; exit 1\n"}, "broken")

    app = unique("bpcustom")
    assert platform.ssh(admin, "apps:create", app).returncode == 0
    message = "hello $(not run) \"quoted\" 'single'"
    r = platform.ssh(
        admin,
        "config:set",
        "--app",
        app,
        f"BUILDPACK_URL=file://{bp}#v1",
        "MESSAGE='hello $(not run) \"quoted\" '\\''single'\\'",
    )
    assert r.returncode == 0, r.stderr
    work = platform.checkout("bp-static", app)
    (work / "index.html").unlink()  # nothing a built-in would detect: the named buildpack decides
    commit_files(platform, work, {"README": "custom\n"})
    out = pushed(platform, work, admin)
    assert f"remote: -----> Fetching buildpack file://{bp}#v1" in out
    assert "remote: -----> Custom app detected" in out
    assert "remote: -----> Custom compile done" in out
    assert platform.get(app, "/message.txt") == (200, message)
    _status, listing = platform.get(app, "/env-files.txt")
    assert listing.split() == ["BUILDPACK_URL", "MESSAGE"]


def test_a_tree_no_buildpack_detects_is_rejected(platform: Harness, admin: Key) -> None:
    app = unique("bpnone")
    work = platform.checkout("bp-static", app)
    (work / "index.html").unlink()
    commit_files(platform, work, {"README": "nothing to run\n"})
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "no buildpack detects this app: add a requirements.txt, package.json" in r.stderr
    assert "pre-receive hook declined" in r.stderr


def test_several_buildpacks_from_a_buildpacks_file(platform: Harness, admin: Key) -> None:
    app = unique("bpmulti")
    work = platform.checkout("bp-static", app)
    commit_files(platform, work, {".buildpacks": "static\nprocfile\n", "Procfile": "worker: echo working\n"})
    out = pushed(platform, work, admin)
    assert "remote: -----> Static app detected" in out
    assert "remote: -----> Procfile-only app detected" in out  # every named buildpack compiles, in order
    assert out.index("Nothing to compile") > out.index("-----> Serving ")
    assert "remote:        Procfile declares types -> worker" in out
    assert "remote:        Default types for buildpack -> web" in out
    status, body = platform.get(app)
    assert status == 200 and "hello from a static site" in body
