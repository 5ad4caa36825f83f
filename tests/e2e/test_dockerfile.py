"""Dockerfile builds as people write them today (buildah, in a network namespace of its own): real
pushes through the router with stock git and ssh.

Cache mounts kept per app and purged, .dockerignore, build args and secrets only when the app lists
them, multi-stage COPY --from, the heredoc error, and what a build cannot reach: the harness's etcd,
registry, SSH and router ports, the host's own addresses and a container on the docker bridge.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import Harness, Key, unique

CACHE_DOCKERFILE = """\
FROM deis/stack:bookworm AS build
COPY message.txt /message.txt
RUN --mount=type=cache,target=/root/.cache sh -c 'if [ -f /root/.cache/stamp ]; \\
    then echo "cache: warm $(cat /root/.cache/stamp)"; \\
    else echo "cache: cold"; cat /proc/sys/kernel/random/uuid > /root/.cache/stamp; fi; \\
    mkdir -p /out && cp /root/.cache/stamp /out/stamp'
FROM deis/stack:bookworm
COPY --from=build /out/stamp /stamp
COPY . /app
EXPOSE 5000
CMD ["python3", "-u", "/app/app.py"]
"""

SERVE = 'COPY . /app\nCMD ["python3", "/app/app.py"]\n'


def app_tree(h: Harness, app: str, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    work = h.checkout("hello", app)
    (work / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (work / name).write_text(text)
    h.git(work, "add", "-A")
    h.git(work, "commit", "-qm", "dockerfile")
    return work


def last_errors(stderr: str) -> list[str]:
    """The ` !` lines of a rejected push, in order."""
    return [ln.split(" !", 1)[1].strip() for ln in stderr.splitlines() if " !  " in ln]


def destroy(h: Harness, key: Key, app: str) -> None:
    h.ssh(key, "apps:destroy", app, "--confirm", app)


@pytest.fixture()
def app_name(platform: Harness, admin: Key) -> Iterator[str]:
    app = unique("df")
    yield app
    destroy(platform, admin, app)


def test_cache_mount_is_kept_between_builds_and_purged(platform: Harness, admin: Key, app_name: str) -> None:
    work = app_tree(platform, app_name, CACHE_DOCKERFILE)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "cache: cold" in r.stderr
    assert "STEP" in r.stderr  # buildah's steps stream to the pusher
    platform.wait_for(app_name, "hello")
    platform.commit_change(work, "message.txt", "second\n")
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "cache: warm" in r.stderr  # the RUN step ran again and found the app's cache
    platform.wait_for(app_name, "second")
    r = platform.ssh(admin, "builds:purge-cache", "--app", app_name)
    assert r.returncode == 0, r.stderr
    platform.commit_change(work, "message.txt", "third\n")
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "cache: cold" in r.stderr
    platform.wait_for(app_name, "third")


def test_same_inputs_reuse_the_previous_image(platform: Harness, admin: Key, app_name: str) -> None:
    work = app_tree(
        platform, app_name, 'FROM deis/stack:bookworm\nCOPY . /app\nCMD ["python3", "/app/app.py"]\n'
    )
    assert platform.push(work, admin).returncode == 0
    platform.git(work, "commit", "-q", "--allow-empty", "-m", "same tree")
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "reusing it" in r.stderr
    assert "STEP" not in r.stderr


def test_dockerignore_build_args_and_secrets(platform: Harness, admin: Key, app_name: str) -> None:
    token_hash = hashlib.sha256(b"s3cr3t-build-token").hexdigest()  # the Dockerfile never holds it
    dockerfile = f"""\
FROM deis/stack:bookworm
ARG GREETING
ARG TOKEN
RUN echo "greeting=$GREETING token=${{TOKEN:-unset}}" && echo "$GREETING" > /greeting
RUN --mount=type=secret,id=TOKEN sha256sum /run/secrets/TOKEN | grep -q {token_hash} && echo secret-ok
RUN --mount=type=secret,id=ca-bundle grep -q 'BEGIN CERTIFICATE' /run/secrets/ca-bundle && echo ca-ok
COPY . /app
CMD ["python3", "/app/app.py"]
"""
    assert platform.ssh(admin, "apps:create", app_name).returncode == 0
    r = platform.ssh(
        admin,
        "config:set",
        "--app",
        app_name,
        "DOCKER_BUILD_ARGS=GREETING",
        "DOCKER_BUILD_SECRETS=TOKEN",
        "GREETING=hello-from-arg",
        "TOKEN=s3cr3t-build-token",
    )
    assert r.returncode == 0, r.stderr
    files = {".dockerignore": "private.key\n", "private.key": "do-not-ship\n"}
    work = app_tree(platform, app_name, dockerfile, files)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "greeting=hello-from-arg token=unset" in r.stderr  # TOKEN is no build arg: not listed
    assert "secret-ok" in r.stderr and "ca-ok" in r.stderr
    assert "s3cr3t-build-token" not in r.stderr
    run = platform.ssh(admin, "run", "--app", app_name, "--", "sh", "-c", "'cat /greeting; ls -a /app'")
    assert run.returncode == 0, run.stderr
    assert "hello-from-arg" in run.stdout
    assert "private.key" not in run.stdout and "message.txt" in run.stdout
    image = image_of(platform, admin, app_name)
    client = docker.from_env()
    client.images.pull(image, auth_config=platform.settings.registry_auth().auth_config())
    dump = json.dumps(client.images.get(image).history()) + json.dumps(client.images.get(image).attrs)
    assert "hello-from-arg" in dump  # a listed build arg is in the history, as docker puts it
    assert "s3cr3t-build-token" not in dump  # a secret and an unlisted config var are not


def image_of(h: Harness, key: Key, app: str) -> str:
    r = h.ssh(key, "apps:info", app, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return str(data["build"]["image"])


def test_heredoc_gets_a_one_line_error(platform: Harness, admin: Key, app_name: str) -> None:
    dockerfile = "FROM deis/stack:bookworm\nCOPY <<EOF /srv/app.py\nprint('hi')\nEOF\n"
    work = app_tree(platform, app_name, dockerfile)
    r = platform.push(work, admin)
    assert r.returncode != 0
    errors = last_errors(r.stderr)
    assert "heredocs (COPY <<EOF)" in errors[-2], errors
    assert "COPY it" in errors[-2]
    assert errors[-1].startswith("push rejected")


def test_failing_step_error_is_last_before_rejection(platform: Harness, admin: Key, app_name: str) -> None:
    work = app_tree(platform, app_name, "FROM deis/stack:bookworm\nRUN echo compiling && exit 3\n")
    r = platform.push(work, admin)
    assert r.returncode != 0
    errors = last_errors(r.stderr)
    assert 'STEP "RUN echo compiling && exit 3"' in errors[-2] and "exit status 3" in errors[-2], errors
    assert errors[-1].startswith("push rejected")


def test_dangerous_mounts_are_refused_before_building(platform: Harness, admin: Key, app_name: str) -> None:
    cases = [
        "RUN --mount=type=bind,source=hostroot,target=/h cat /h/etc/hostname",
        "RUN --mount=type=bind,from=deis/stack:bookworm,target=/h true",
        "RUN --mount=type=cache,id=$X,target=/h true",
    ]
    work = app_tree(platform, app_name, "FROM deis/stack:bookworm\n")
    (work / "hostroot").symlink_to("/")
    for line in cases:
        (work / "Dockerfile").write_text(f"FROM deis/stack:bookworm\n{line}\n")
        platform.git(work, "add", "-A")
        platform.git(work, "commit", "-qm", line)
        r = platform.push(work, admin)
        assert r.returncode != 0, line
        assert "Dockerfile line 2" in last_errors(r.stderr)[-2], r.stderr
        assert "STEP" not in r.stderr  # refused before buildah ran


class Listener:
    """A TCP listener on every host address: counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def host_addresses() -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [w.split("/")[0] for line in out.splitlines() for i, w in enumerate(line.split()) if i == 3]


@pytest.fixture()
def bridge_container() -> Iterator[str]:
    client = docker.from_env()
    c = client.containers.run(
        "deis/stack:bookworm", ["python3", "-m", "http.server", "8000"], detach=True, remove=True
    )
    try:
        c.reload()
        ip = str(c.attrs["NetworkSettings"]["IPAddress"])
        deadline = time.monotonic() + 20
        while True:  # the host reaches it: only the build must not
            try:
                socket.create_connection((ip, 8000), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the bridge container never listened"
                time.sleep(0.1)
        yield ip
    finally:
        c.remove(force=True)


PROBE = """\
import socket, sys, urllib.request
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((host, int(port))); print("REACHED", target)
    except OSError as e:
        print("blocked", target, type(e).__name__)
    finally:
        s.close()
"""


def test_a_build_reaches_no_platform_endpoint(
    platform: Harness, admin: Key, app_name: str, bridge_container: str
) -> None:
    s = platform.settings
    listener = Listener()
    ports = [s.etcd_port, s.registry_port, s.ssh_port, s.http_port]
    targets = [f"127.0.0.1:{p}" for p in ports]
    targets += [f"{addr}:{p}" for addr in host_addresses() for p in (listener.port, s.http_port)]
    targets.append(f"{bridge_container}:8000")
    probe = f"RUN python3 /probe.py {' '.join(targets)}"
    dockerfile = f"FROM deis/stack:bookworm\nCOPY probe.py /probe.py\n{probe}\n{SERVE}"
    work = app_tree(platform, app_name, dockerfile, {"probe.py": PROBE})
    r = platform.push(work, admin)
    assert "REACHED" not in r.stderr, r.stderr
    for target in targets:
        assert f"blocked {target}" in r.stderr, (target, r.stderr)
    assert listener.accepted == 0


@pytest.mark.parametrize("which", ["etcd", "registry"])
def test_add_of_a_platform_url_fails_and_leaks_nothing(
    platform: Harness, admin: Key, app_name: str, which: str
) -> None:
    s = platform.settings
    url = {
        "etcd": f"http://127.0.0.1:{s.etcd_port}/v2/keys/?recursive=true",
        "registry": f"https://127.0.0.1:{s.registry_port}/v2/_catalog",
    }[which]
    work = app_tree(platform, app_name, f"FROM deis/stack:bookworm\nADD {url} /x\nRUN cat /x\n")
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "connection refused" in last_errors(r.stderr)[-2]
    assert "repositories" not in r.stderr and '"node"' not in r.stderr


def test_a_build_reaches_the_internet(platform: Harness, admin: Key, app_name: str) -> None:
    """The positive control: through NAT and the host's CA bundle, PyPI answers."""
    fetch = (
        'RUN --mount=type=secret,id=ca-bundle python3 -c "import ssl, urllib.request; '
        "ctx = ssl.create_default_context(cafile='/run/secrets/ca-bundle'); "
        "r = urllib.request.urlopen('https://pypi.org/simple/pip/', context=ctx, timeout=20); "
        "print('pypi', r.status)\""
    )
    work = app_tree(platform, app_name, f"FROM deis/stack:bookworm\n{fetch}\n{SERVE}")
    r = platform.push(work, admin)
    assert "pypi 200" in r.stderr, r.stderr


def marked(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (the build's own, started by its RUN step)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_hang_up_stops_the_build_at_once(platform: Harness, admin: Key, app_name: str) -> None:
    marker = unique("hangup")
    work = app_tree(platform, app_name, f"FROM deis/stack:bookworm\nRUN sleep 600 && echo {marker}\n{SERVE}")
    push = subprocess.Popen(
        ["git", "push", "deis", "master"],
        cwd=work,
        env=platform.git_env(admin),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marked(marker):
            assert time.monotonic() < deadline, "the build never reached its RUN step"
            time.sleep(0.2)
    finally:
        os.killpg(push.pid, signal.SIGKILL)  # the pusher hangs up
        push.wait()
    hung_up = time.monotonic()
    while marked(marker):
        assert time.monotonic() - hung_up < 15, "the build still runs after the hang-up"
        time.sleep(0.2)
    platform.commit_change(work, "Dockerfile", f"FROM deis/stack:bookworm\n{SERVE}")
    r = platform.push(work, admin)  # the app's lock and the build network were given back
    assert r.returncode == 0, r.stderr


FORKS = """import os, time
kids = []
try:
    while len(kids) < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError as exc:
    print("forks stopped at", len(kids), exc.errno, flush=True)
for kid in kids:
    os.kill(kid, 9)
"""


def test_run_steps_are_held_to_the_build_pids_limit(platform: Harness, admin: Key, app_name: str) -> None:
    dockerfile = "FROM deis/stack:bookworm\nCOPY forks.py /forks.py\nRUN python3 /forks.py\n" + SERVE
    work = app_tree(platform, app_name, dockerfile, {"forks.py": FORKS})
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    said = [
        ln.split("forks stopped at ", 1)[1].split()
        for ln in r.stderr.splitlines()
        if "forks stopped at" in ln
    ]
    assert said, r.stderr
    count, errno = int(said[0][0]), int(said[0][1])
    assert errno == 11 and 900 < count < platform.settings.build_pids_limit  # EAGAIN, at the limit


def test_a_run_step_beyond_the_memory_limit_is_killed(platform: Harness, admin: Key, app_name: str) -> None:
    hog = "chunks = []\nwhile True:\n    chunks.append(b'x' * (64 << 20))\n"
    dockerfile = "FROM deis/stack:bookworm\nCOPY hog.py /hog.py\nRUN python3 /hog.py\n" + SERVE
    r = platform.push(app_tree(platform, app_name, dockerfile, {"hog.py": hog}), admin)
    assert r.returncode != 0
    assert "exit status 137" in last_errors(r.stderr)[-2], r.stderr  # SIGKILL: the OOM killer's
