"""appliance.services and appliance.processes: exact argv builders, the registry config, real etcd and
registry on loopback."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import components, processes, services
from builders import engine, images
from core import proc, regauth
from core.errors import ServiceError
from core.output import Output
from core.regauth import RegistryAuth
from core.settings import Settings


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def quiet() -> Output:
    return Output(io.StringIO())


# -- pure builders ----------------------------------------------------------------------------------


def test_etcd_argv() -> None:
    s = Settings(state_dir=Path("/srv/deis"), etcd_port=12379, etcd_peer_port=12380)
    assert services.etcd_argv(s) == [
        "etcd",
        "--name", "deis",
        "--data-dir", "/srv/deis/etcd",
        "--enable-v2=true",
        "--listen-client-urls", "https://127.0.0.1:12379",
        "--advertise-client-urls", "https://127.0.0.1:12379",
        "--cert-file", "/srv/deis/tls/etcd.crt",
        "--key-file", "/srv/deis/tls/etcd.key",
        "--client-cert-auth",
        "--trusted-ca-file", "/srv/deis/tls/ca.crt",
        "--listen-peer-urls", "http://127.0.0.1:12380",
        "--initial-advertise-peer-urls", "http://127.0.0.1:12380",
        "--initial-cluster", "deis=http://127.0.0.1:12380",
    ]  # fmt: skip


def test_etcd_argv_defaults() -> None:
    argv = services.etcd_argv(Settings())
    assert argv[argv.index("--listen-client-urls") + 1] == "https://127.0.0.1:2379"
    assert argv[argv.index("--data-dir") + 1] == "/var/lib/deis/etcd"


def test_registry_argv_and_config() -> None:
    s = Settings(state_dir=Path("/srv/deis"), registry_port=15000)
    assert services.registry_config_path(s) == Path("/srv/deis/registry/config.yml")
    assert services.registry_argv(s) == ["docker-registry", "serve", "/srv/deis/registry/config.yml"]
    assert services.registry_config(s) == (
        "version: 0.1\n"
        "log:\n"
        "  fields:\n"
        "    service: registry\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "  filesystem:\n"
        '    rootdirectory: "/srv/deis/registry/data"\n'
        "  delete:\n"
        "    enabled: true\n"
        "auth:\n"
        "  htpasswd:\n"
        "    realm: deis-registry\n"
        '    path: "/srv/deis/tls/registry.htpasswd"\n'
        "http:\n"
        "  addr: 127.0.0.1:15000\n"
        "  tls:\n"
        '    certificate: "/srv/deis/tls/registry.crt"\n'
        '    key: "/srv/deis/tls/registry.key"\n'
    )


def test_registry_config_quotes_odd_paths() -> None:
    s = Settings(state_dir=Path('/srv/my "deis": x'))
    assert '    rootdirectory: "/srv/my \\"deis\\": x/registry/data"\n' in services.registry_config(s)


def test_dockerd_argv() -> None:
    assert services.dockerd_argv(Settings()) == ["dockerd"]


def test_http_ok_refuses_non_loopback() -> None:
    with pytest.raises(ValueError):
        processes.http_ok("http://example.com/v2/")


def test_http_ok_false_when_nothing_listens() -> None:
    (port,) = free_ports(1)
    assert processes.http_ok(f"http://127.0.0.1:{port}/v2/", timeout=0.5) is False


# -- the shared start/stop path, with harmless processes ----------------------------------------------


def test_start_reports_an_early_exit(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    argv = ["sh", "-c", "echo old run; echo '==> header'; echo cannot bind >&2; exit 3"]
    svc = processes.Service(name="boom", argv=argv, ready=lambda: False)
    with pytest.raises(ServiceError, match=r"boom exited with status 3 before it was ready: cannot bind"):
        processes.start(svc, s, quiet())
    assert not processes.pidfile(s, "boom").exists()


def test_start_reports_a_missing_program(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    svc = processes.Service(name="x", argv=["no-such-program-here"], ready=lambda: False, package="x-pkg")
    with pytest.raises(ServiceError, match=r"x: no-such-program-here not found \(install the x-pkg package"):
        processes.start(svc, s, quiet())


def test_start_times_out_and_stops_what_it_started(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    svc = processes.Service(name="slow", argv=["sleep", "60"], ready=lambda: False, address="127.0.0.1:1")
    began = time.monotonic()
    with pytest.raises(ServiceError, match=r"slow was not ready on 127.0.0.1:1 after 0.5 s; stopped it"):
        processes.start(svc, s, quiet(), timeout=0.5)
    assert time.monotonic() - began < 5
    assert not processes.pidfile(s, "slow").exists()
    assert processes.running_pid(svc, s) is None


def test_start_refuses_a_foreign_instance(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    svc = processes.Service(name="etcd", argv=["etcd"], ready=lambda: True, address="127.0.0.1:2379")
    with pytest.raises(ServiceError, match="something this platform did not start already answers"):
        processes.start(svc, s, quiet())


def test_start_refuses_a_foreign_plain_http_etcd(tmp_path: Path) -> None:
    """An etcd of the earlier, plain-http kind that this platform did not start: not ready for the
    platform's TLS, still in the way."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Settings(state_dir=tmp_path, etcd_port=port)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(tmp_path)]
    )
    try:
        (tmp_path / "v2").mkdir()
        (tmp_path / "v2" / "keys").write_text("{}")
        deadline = time.monotonic() + 10
        while not services.etcd_answers_plain(s):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not services.etcd_service(s).ready()
        with pytest.raises(ServiceError, match="something this platform did not start already answers"):
            processes.start(services.etcd_service(s), s, quiet())
    finally:
        server.terminate()
        server.wait()


def test_start_uses_a_foreign_shared_instance(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    svc = processes.Service(name="dockerd", argv=["dockerd"], ready=lambda: True, shared=True)
    assert processes.start(svc, s, quiet()) is None
    assert not processes.pidfile(s, "dockerd").exists()


def test_stop_never_signals_a_process_that_is_not_ours(tmp_path: Path) -> None:
    """A pidfile naming some other program (a reused PID) is removed, and that process is left alone."""
    s = Settings(state_dir=tmp_path)
    other = subprocess.Popen(["sleep", "60"])
    try:
        s.run_dir.mkdir(parents=True)
        processes.pidfile(s, "etcd").write_text(f"{other.pid}\n")
        svc = services.etcd_service(s)
        assert processes.running_pid(svc, s) is None
        assert processes.stop(svc, s, quiet()) is False
        assert not processes.pidfile(s, "etcd").exists()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_stop_without_pidfile_is_a_no_op(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "never")
    assert processes.stop(services.etcd_service(s), s, quiet()) is False
    assert services.stop_dockerd(s, quiet()) is False
    assert not s.state_dir.exists()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    # Ignores SIGTERM; "ready" once the trap is set (a SIGTERM before that would end it at once).
    mark = tmp_path / "trapped"
    svc = processes.Service(
        name="stubborn",
        argv=["sh", "-c", f"trap '' TERM; touch {mark}; while :; do sleep 0.1; done"],
        ready=mark.exists,
    )
    pid = processes.start(svc, s, quiet())
    assert pid is not None and processes.running_pid(svc, s) == pid
    began = time.monotonic()
    assert processes.stop(svc, s, quiet(), grace=0.5) is True
    assert 0.4 < time.monotonic() - began < 5
    assert not proc.alive(pid)
    assert not processes.pidfile(s, "stubborn").exists()


# -- real etcd and registry on loopback ---------------------------------------------------------------


@pytest.fixture
def loopback_settings(tmp_path: Path) -> Iterator[Settings]:
    for program in ("etcd", "docker-registry"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (./platform test installs it)")
    etcd_port, peer_port, registry_port = free_ports(3)
    s = Settings(
        state_dir=tmp_path, etcd_port=etcd_port, etcd_peer_port=peer_port, registry_port=registry_port
    )
    yield s
    # Whatever the test did, leave nothing running.
    for svc in services.services(s):
        pid = processes.running_pid(svc, s)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_etcd_and_registry_start_idempotently_and_stop(loopback_settings: Settings) -> None:
    s = loopback_settings
    etcd, registry = services.services(s)
    assert [etcd.name, registry.name] == ["etcd", "registry"]

    stream = io.StringIO()
    out = Output(stream)
    pids = {}
    for svc in (etcd, registry):
        began = time.monotonic()
        pid = processes.start(svc, s, out)
        assert pid is not None
        pids[svc.name] = pid
        assert time.monotonic() - began < svc.ready_timeout
        assert processes.pidfile(s, svc.name).read_text() == f"{pid}\n"
        assert processes.logfile(s, svc.name).exists()
        assert svc.ready()
    assert services.registry_config_path(s).read_text() == services.registry_config(s)
    assert services.etcd_ready(s)
    # Mutual TLS only: plain http, and https without the platform's client certificate, get nothing.
    assert not services.etcd_answers_plain(s)
    anonymous = ssl.create_default_context(cafile=str(s.etcd_tls.ca))
    assert not processes.http_ok(f"https://127.0.0.1:{s.etcd_port}/v2/keys", tls=anonymous)
    # The registry: https with the platform's password only.
    assert services.registry_ready(s) and not services.registry_answers_plain(s)
    trusting = ssl.create_default_context(cafile=str(s.etcd_tls.ca))
    assert not processes.http_ok(f"https://127.0.0.1:{s.registry_port}/v2/", tls=trusting)
    wrong = RegistryAuth(regauth.USER, "guess").header()
    assert not processes.http_ok(
        f"https://127.0.0.1:{s.registry_port}/v2/", tls=trusting, headers={"Authorization": wrong}
    )

    # A second start changes nothing.
    for svc in (etcd, registry):
        assert processes.start(svc, s, out) == pids[svc.name]
    assert "etcd already running" in stream.getvalue()
    assert "registry already running" in stream.getvalue()

    assert all(processes.is_running(svc, s) for svc in (etcd, registry))

    for svc in (registry, etcd):
        assert processes.stop(svc, s, out) is True
        assert not processes.pidfile(s, svc.name).exists()
        assert not proc.alive(pids[svc.name])
        assert not svc.ready()
    assert not any(processes.is_running(svc, s) for svc in (etcd, registry))
    # Stopping again is a no-op.
    assert processes.stop(etcd, s, out) is False


def test_etcd_keeps_its_data_across_restarts(loopback_settings: Settings) -> None:
    import urllib.parse

    s = loopback_settings
    etcd = services.etcd_service(s)
    url = f"https://127.0.0.1:{s.etcd_port}/v2/keys/deis/probe"
    processes.start(etcd, s, quiet())
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=services.etcd_client_context(s))
    )
    req = urllib.request.Request(url, data=urllib.parse.urlencode({"value": "kept"}).encode(), method="PUT")
    with opener.open(req, timeout=5) as resp:
        assert resp.status in (200, 201)
    processes.stop(etcd, s, quiet())
    processes.start(etcd, s, quiet())
    with opener.open(url, timeout=5) as resp:
        assert b'"value":"kept"' in resp.read()
    processes.stop(etcd, s, quiet())


def test_down_stops_the_loose_etcd_and_registry_of_the_previous_layout(
    loopback_settings: Settings,
) -> None:
    if not services.docker_answers():
        pytest.skip("no docker daemon answers")
    s = loopback_settings
    for svc in services.services(s):
        processes.start(svc, s, quiet())
    stream = io.StringIO()
    components.down(s, Output(stream))
    assert "Stopping registry" in stream.getvalue() and "Stopping etcd" in stream.getvalue()
    assert all(processes.running_pid(svc, s) is None for svc in services.services(s))
    assert not (s.run_dir / "dockerd.pid").exists()


# -- docker (the daemon is shared; these only look) -----------------------------------------------------


def test_ensure_dockerd_and_stack_image_leave_a_running_setup_alone(tmp_path: Path) -> None:
    if not services.docker_answers():
        pytest.skip("no docker daemon answers")
    s = Settings(state_dir=tmp_path / "state")
    services.ensure_dockerd(s, quiet())
    assert not s.state_dir.exists()  # nothing started, nothing written
    if not engine.image_exists(s.stack_image):
        pytest.skip(f"{s.stack_image} is missing (./platform test builds it)")
    assert images.ensure_stack_image(s, quiet()) is False
    assert not s.state_dir.exists()


def test_nothing_runs_for_a_fresh_state_dir(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    assert not any(processes.is_running(svc, s) for svc in services.services(s))


def test_stale_daemon_pidfiles_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A restored snapshot leaves /var/run/docker.pid naming a PID another process now has: dockerd
    would refuse to start. Only a pidfile whose PID runs that very program is kept."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        reused = tmp_path / "docker.pid"  # a live PID, but not dockerd
        reused.write_text(f"{sleeper.pid}\n")
        dead = tmp_path / "gone.pid"
        dead.write_text("999999999\n")
        garbage = tmp_path / "garbage.pid"
        garbage.write_text("not a pid\n")
        live = tmp_path / "sleep.pid"  # the program it names: kept
        live.write_text(f"{sleeper.pid}\n")
        pidfiles = {reused: "dockerd", dead: "dockerd", garbage: "containerd", live: "sleep"}
        pidfiles[tmp_path / "absent.pid"] = "dockerd"
        removed = services.remove_stale_pidfiles(pidfiles)
        assert sorted(removed) == sorted([reused, dead, garbage])
        assert live.exists() and not reused.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
