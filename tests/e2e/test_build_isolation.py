"""Hostile buildpacks (issue 17, hole 2): an unprivileged user names a buildpack of their own whose
bin/compile and bin/release attack the host. Each asserts that no host file is written, nothing the
build left is followed, and the attacker gets a one-line error or an ordinary deploy."""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from tests.e2e.buildpack_apps import commit_files
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

SERVE = "python3 -m http.server --bind 0.0.0.0 $PORT"
RELEASE = f"#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: {SERVE}\\n'\n"


@pytest.fixture(scope="module")
def mallory(platform: Harness) -> Key:
    return platform.add_user("mallory-bp")  # one name per module: the platform is the session's


def buildpack(root: Path, compile_sh: str, release_sh: str = RELEASE) -> Path:
    """A plain-directory buildpack (under the harness's DEIS_LOCAL_BUILDPACKS) with these scripts."""
    bp = root / "buildpack"
    (bp / "bin").mkdir(parents=True)
    for name, text in {
        "detect": "#!/bin/sh\necho Hostile\n",
        "compile": compile_sh,
        "release": release_sh,
    }.items():
        (bp / "bin" / name).write_text(text)
        (bp / "bin" / name).chmod(0o755)
    return bp


def hostile_app(platform: Harness, key: Key, bp: Path, prefix: str) -> tuple[str, Path]:
    app = unique(prefix)
    r = platform.ssh(key, "apps:create", app)
    assert r.returncode == 0, r.stderr
    r = platform.ssh(key, "config:set", "--app", app, f"BUILDPACK_URL={bp}")
    assert r.returncode == 0, r.stderr
    work = platform.checkout("bp-static", app)
    (work / "index.html").unlink()
    commit_files(platform, work, {"README": "hostile\n", "hello.txt": "hello\n"})
    return app, work


def test_a_buildpack_cannot_make_the_host_write_through_a_symlinked_procfile(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"  # a host file, root's
    victim.write_text("root's file, untouched\n")
    compile_sh = f"""#!/bin/sh
echo "-----> compiling as uid $(id -u) gid $(id -g), $(grep CapEff /proc/self/status)"
rm -f "$1/Procfile"
ln -s {victim} "$1/Procfile"
"""
    app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bplink")
    r = platform.push(work, mallory)
    assert victim.read_text() == "root's file, untouched\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644 and victim.stat().st_uid == 0
    assert r.returncode == 0, r.stderr
    # buildpacks run as the build user, with no capability
    uid = platform.settings.build_uid
    assert f"compiling as uid {uid} gid {uid}, CapEff:\t0000000000000000" in r.stderr
    # the app got the merged Procfile (fresh, from the platform), not its link
    assert platform.get(app, "/hello.txt") == (200, "hello\n")
    assert platform.get(app, "/Procfile") == (200, f"web: {SERVE}\n")


def test_a_buildpack_cannot_plant_links_or_fifos_for_the_host_to_read(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    """A dangling link as release YAML was "internal error: FileNotFoundError"; a FIFO would hang the
    deploy. /out is the driver's: the buildpack cannot put anything there, and the deploy goes on."""
    compile_sh = """#!/bin/sh
ln -s /nowhere /out/release-00.yml 2>/dev/null || echo "-----> no link planted in /out"
mkfifo /out/release-01.yml 2>/dev/null || echo "-----> no FIFO planted in /out"
touch /out/failed 2>/dev/null || echo "-----> nothing planted in /out"
"""
    app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bpout")
    r = platform.push(work, mallory)
    assert r.returncode == 0, r.stderr
    for line in ("no link planted in /out", "no FIFO planted in /out", "nothing planted in /out"):
        assert f"remote: -----> {line}" in r.stderr, r.stderr
    assert platform.get(app, "/hello.txt") == (200, "hello\n")


def test_bin_release_output_is_checked_before_use(platform: Harness, mallory: Key, tmp_path: Path) -> None:
    release_sh = "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  ../x: evil\\n'\n"
    app, work = hostile_app(platform, mallory, buildpack(tmp_path, "#!/bin/sh\ntrue\n", release_sh), "bprel")
    r = platform.push(work, mallory)
    assert r.returncode != 0
    errors = [line.strip() for line in r.stderr.splitlines() if line.startswith("remote:  !     ")]
    assert errors[0] == "remote:  !     bin/release names an invalid process type '../x'", r.stderr
    assert "internal error" not in r.stderr
    assert platform.containers(app) == []


def test_bin_release_output_is_bounded(platform: Harness, mallory: Key, tmp_path: Path) -> None:
    release_sh = "#!/bin/sh\nprintf -- '---\\naddons: []\\n'\nyes '# padding'\n"  # never ends by itself
    _app, work = hostile_app(platform, mallory, buildpack(tmp_path, "#!/bin/sh\ntrue\n", release_sh), "bpbig")
    r = platform.push(work, mallory)
    assert r.returncode != 0
    assert "remote:  !     bin/release's output is larger than 64 KiB" in r.stderr, r.stderr


def test_the_cache_keeps_no_setuid_file_and_an_old_root_cache_is_migrated(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    compile_sh = """#!/bin/sh
set -e
cat "$2/old" && echo rewritten > "$2/old"
cp /bin/sh "$2/sh" && chmod 4755 "$2/sh"
mkdir -p "$2/dir" && chmod 2775 "$2/dir"
echo "-----> left a setuid shell in the cache"
"""
    app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bpsuid")
    cache = platform.settings.state_dir / "cache" / app
    cache.mkdir(parents=True)  # as a root build of the previous version left it
    (cache / "old").write_text("from the root build\n")
    (cache / "root-suid").write_bytes(b"\x7fELF")
    (cache / "root-suid").chmod(0o4755)
    r = platform.push(work, mallory)
    assert r.returncode == 0, r.stderr
    assert "remote: from the root build" in r.stderr  # the build user could read the old cache
    assert (cache / "old").read_text() == "rewritten\n"
    uid = platform.settings.build_uid
    for name in ("sh", "root-suid", "dir", "old"):
        st = (cache / name).lstat()
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), name
        assert (st.st_uid, st.st_gid) == (uid, uid), name
    assert os.access(cache / "sh", os.X_OK)  # stripped, not removed
    assert platform.get(app, "/hello.txt") == (200, "hello\n")


def test_the_build_container_is_confined(platform: Harness, mallory: Key, tmp_path: Path) -> None:
    """What the engine was asked for: no capability but the driver's two, no-new-privileges, a pids
    limit (a fork bomb in bin/compile cannot take the host). The compile waits for the test's go."""
    compile_sh = '#!/bin/sh\nn=0\nwhile [ ! -e "$2/go" ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done\n'
    app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bpconf")
    client = docker.from_env()
    label = f"io.deis.platform={platform.settings.state_dir}"
    with ThreadPoolExecutor(1) as pool:
        push = pool.submit(platform.push, work, mallory)
        deadline = time.monotonic() + 120
        while not (found := client.containers.list(filters={"label": label, "name": f"deis-build-{app}-"})):
            assert time.monotonic() < deadline and not push.done(), "the build container never appeared"
            time.sleep(0.1)
        (platform.settings.state_dir / "cache" / app / "go").touch()
        r = push.result()
    assert r.returncode == 0, r.stderr
    host = found[0].attrs["HostConfig"]
    # the engine keeps what the client sent: `SETUID` from the SDK, `CAP_SETUID` from newer CLIs
    added = sorted(c.removeprefix("CAP_") for c in host["CapAdd"])
    assert host["CapDrop"] == ["ALL"] and added == ["SETGID", "SETUID"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == platform.settings.build_pids_limit
    assert host["Memory"] == platform.settings.build_memory
    assert found[0].attrs["Config"]["User"] == "0:0"


# -- the build network and the build's limits (issue 17: builds' network and limits) -------------

PROBE = """#!/bin/sh
python3 - <<'PY'
import socket, struct
gateway = "?"
for line in open("/proc/net/route").read().splitlines()[1:]:
    words = line.split()
    if words[1] == "00000000":
        gateway = socket.inet_ntoa(struct.pack("<L", int(words[2], 16)))
for name, addr, port in [TARGETS] + [("gateway-router", gateway, ROUTER_PORT)]:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((addr, port))
        said = "connected"
    except ConnectionRefusedError:
        said = "refused"
    except OSError as exc:
        said = type(exc).__name__
    print(f"-----> probe {name} {addr}:{port} {said}", flush=True)
PY
"""


def test_a_buildpack_reaches_no_platform_endpoint_and_no_other_app(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    """bin/compile on docker's default bridge reached the host through its gateway (the router, SSH)
    and the host's other addresses; on the build network each connection is refused at once."""
    victim = unique("bpvictim")
    assert platform.ssh(mallory, "apps:create", victim).returncode == 0
    r = platform.push(platform.checkout("bp-static", victim), mallory)
    assert r.returncode == 0, r.stderr
    c = docker.from_env().containers.get(platform.containers(victim)[0])
    ip = next(n["IPAddress"] for n in c.attrs["NetworkSettings"]["Networks"].values() if n["IPAddress"])
    port = int(next(e.split("=", 1)[1] for e in c.attrs["Config"]["Env"] if e.startswith("PORT=")))
    s = platform.settings
    targets = [
        ("etcd", "172.17.0.1", s.etcd_port),
        ("registry", "172.17.0.1", s.registry_port),
        ("ssh", "172.17.0.1", s.ssh_port),
        ("router", "172.17.0.1", s.http_port),
        ("app", ip, port),
    ]
    probe = PROBE.replace("[TARGETS]", repr(targets)).replace("ROUTER_PORT", str(s.http_port))
    _app, work = hostile_app(platform, mallory, buildpack(tmp_path, probe), "bpnet")
    r = platform.push(work, mallory)
    assert r.returncode == 0, r.stderr
    said = [line.rstrip() for line in r.stderr.splitlines() if "-----> probe " in line]
    assert len(said) == len(targets) + 1, r.stderr
    for line in said:
        assert line.endswith(" refused"), line
    assert platform.get(victim, "/")[0] == 200  # the victim still serves, through the router


def test_a_fork_bomb_in_bin_compile_is_bounded_and_named(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    compile_sh = """#!/bin/bash
sleep 8 &
s=$!
bomb() { bomb | bomb & }
bomb
wait $s
exit 1
"""
    _app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bpbomb")
    other = unique("bpother")
    assert platform.ssh(mallory, "apps:create", other).returncode == 0
    other_work = platform.checkout("bp-static", other)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        bomb = pool.submit(platform.push, work, mallory)
        time.sleep(2)  # the bomb is at its limit by now
        r = platform.push(other_work, mallory)  # another app still builds and deploys meanwhile
        assert r.returncode == 0, r.stderr
        assert platform.ssh(mallory, "apps:list").returncode == 0
        r = bomb.result()
    assert time.monotonic() - started < 120  # not the build's time limit: its stragglers were killed
    assert r.returncode != 0
    limit = platform.settings.build_pids_limit
    line = f"bin/compile ran out of processes: a build may run {limit} at once (build_pids_limit)"
    assert line in r.stderr, r.stderr
    assert platform.get(other, "/")[0] == 200


def test_bin_compile_beyond_the_memory_limit_is_killed_and_named(
    platform: Harness, mallory: Key, tmp_path: Path
) -> None:
    compile_sh = """#!/bin/sh
echo "-----> allocating"
python3 -c '
chunks = []
while True:
    chunks.append(b"x" * (64 << 20))
'
"""
    _app, work = hostile_app(platform, mallory, buildpack(tmp_path, compile_sh), "bpmem")
    r = platform.push(work, mallory)
    assert r.returncode != 0
    mib = platform.settings.build_memory >> 20
    assert f"bin/compile ran out of memory: a build may use {mib} MiB (build_memory)" in r.stderr, r.stderr
