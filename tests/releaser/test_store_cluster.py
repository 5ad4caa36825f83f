"""The platform's store against a three-member etcd cluster (three real etcd processes on loopback,
the platform's client TLS): it keeps reading, writing and taking locks while a member is stopped,
and the member catches up when it is started again."""

from __future__ import annotations

import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import processes, services
from core.output import Output
from core.settings import Settings
from releaser.locks import AppLock
from releaser.store import Store
from tests.conftest import free_port

QUIET = Output(io.StringIO())


def members(root: Path) -> list[Settings]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    endpoints = ",".join(f"https://127.0.0.1:{client}" for client, _ in ports)
    found = []
    for i, (client, peer) in enumerate(ports):
        s = Settings(
            state_dir=root / f"m{i}",
            etcd_port=client,
            etcd_peer_port=peer,
            etcd_name=f"m{i}",
            etcd_cluster=cluster,
            etcd_endpoints=endpoints,
        )
        s.state_dir.mkdir(parents=True)
        found.append(s)
    services.ensure_pki(found[0])  # one CA and certificates for all (one platform)
    for s in found[1:]:
        shutil.copytree(found[0].tls_dir, s.tls_dir)
    return found


def start_all(settings: list[Settings]) -> None:
    """Side by side: a member is ready only once a quorum of them runs."""
    errors: list[BaseException] = []

    def one(s: Settings) -> None:
        try:
            processes.start(services.etcd_service(s), s, QUIET, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in settings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Settings]]:
    settings = members(tmp_path)
    try:
        start_all(settings)
        yield settings
    finally:
        for s in settings:
            processes.stop(services.etcd_service(s), s, QUIET)


def test_the_store_keeps_working_while_a_member_is_down(cluster: list[Settings]) -> None:
    first = cluster[0]
    store = Store.of(first, read_timeout=5)
    assert store.client.machines  # python-etcd found every member
    store.put("apps/a", {"v": 1})

    processes.stop(services.etcd_service(first), first, QUIET)  # the member the store used first
    store.put("apps/a", {"v": 2})
    assert store.get("apps/a") == {"v": 2}
    lock = AppLock(store, "a", owner="test")
    lock.acquire(wait=5)
    lock.release()

    start_all([first])
    alone = Store(first.etcd_url, read_timeout=5, tls=first.etcd_tls)  # only the member that was down
    assert alone.get("apps/a") == {"v": 2}  # it caught up


def test_a_single_member_platform_is_unchanged() -> None:
    s = Settings()
    assert s.etcd_urls == [s.etcd_url]
    argv = services.etcd_argv(s)
    assert argv[argv.index("--initial-cluster") + 1] == f"deis=http://127.0.0.1:{s.etcd_peer_port}"
    s.etcd_endpoints = f"{s.etcd_url}, https://10.0.0.2:2379"
    assert s.etcd_urls == [s.etcd_url, "https://10.0.0.2:2379"]
