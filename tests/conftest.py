from __future__ import annotations

import contextlib
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import processes, services
from core.output import Output
from core.settings import Settings
from releaser.store import Store
from tests import harness, swarmtest
from tests.harness import Harness, Key


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One whole platform for the session: real etcd, registry, nginx, appliance; shared dockerd."""
    h = Harness(tmp_path_factory.mktemp("platform"))
    try:
        h.up()
        yield h
    finally:
        h.down()


@pytest.fixture(scope="session")
def admin(platform: Harness) -> Key:
    return platform.add_user("admin", admin=True)


@pytest.fixture(scope="session")
def alice(platform: Harness) -> Key:
    return platform.add_user("alice")


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    """The shared engine in a (single-node) swarm for the module's tests that ask; left after them."""
    with swarmtest.single_node_swarm():
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Settings(
        state_dir=Path(tmp_path_factory.mktemp("etcd")), etcd_port=free_port(), etcd_peer_port=free_port()
    )
    etcd = services.etcd_service(s)
    processes.start(etcd, s, Output(io.StringIO()))
    try:
        yield Store.of(s)
    finally:
        processes.stop(etcd, s, Output(io.StringIO()))


def pytest_sessionstart(session: pytest.Session) -> None:
    basetemp = session.config._tmp_path_factory.getbasetemp()
    harness.OWN_PREFIXES.add(str(basetemp) + os.sep)
    # A run killed with the engine (dockerd stopped under it) could not clean up; its containers came back
    # with the engine's restart policy. Remove what such dead test platforms left before we start.
    with contextlib.suppress(Exception):  # no dockerd yet: nothing to sweep, and the tests will say why
        left = harness.sweep_orphans(basetemp.parent)
        if left:
            print(f"removed {len(left)} containers of dead test platforms: {', '.join(sorted(left))}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down: the run must leave no container, network, volume or image of its
    own behind, even when tests failed. Fails the run (and says what is left) otherwise."""
    if getattr(session.config, "workerinput", None) is not None or not (
        harness.OWN_PLATFORMS or harness.OWN_REGISTRIES
    ):
        return
    try:
        left = harness.leftovers()
    except Exception as exc:  # no dockerd: nothing of ours can be left either
        left = [] if "docker" in type(exc).__module__ else [f"could not list: {exc}"]
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("the test run left behind: " + ", ".join(left), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
