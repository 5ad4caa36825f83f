"""The per-app lock against a real etcd: waiting, expiry of a crashed holder, and noticing a loss."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import Conflict
from releaser import locks
from releaser.locks import AppLock
from releaser.store import Store


def test_second_holder_waits_and_is_told(store: Store) -> None:
    first = AppLock(store, "waity", "alice", ttl=5)
    first.acquire(wait=0)
    told: list[str] = []
    threading.Timer(0.5, first.release).start()
    second = AppLock(store, "waity", "bob", ttl=5)
    second.acquire(wait=10, on_wait=lambda holder: told.append(holder["owner"]))
    second.release()
    assert told == ["alice"]


def test_busy_fails_at_once_without_waiting(store: Store) -> None:
    with_lock = AppLock(store, "busy", "alice", ttl=5)
    with_lock.acquire(wait=0)
    try:
        with pytest.raises(Conflict, match="busy: alice has been deploying it"):
            AppLock(store, "busy", "bob").acquire(wait=0)
    finally:
        with_lock.release()


def test_a_crashed_holder_expires(store: Store) -> None:
    assert store.create("locks/crashy", {"owner": "gone", "token": "t", "since": time.time()}, ttl=1)
    began = time.monotonic()
    lock = AppLock(store, "crashy", "bob")
    lock.acquire(wait=10)
    lock.release()
    assert 0.5 < time.monotonic() - began < 6


def test_a_lost_lock_is_noticed_before_traffic_switches(store: Store) -> None:
    lock = AppLock(store, "lossy", "alice", ttl=3)
    lock.acquire(wait=0)
    try:
        locks.ensure_held("lossy")
        store.delete("locks/lossy")  # what expiry during an etcd outage looks like to the holder
        assert lock.lost.wait(5)
        with pytest.raises(Conflict, match="lost the lock on lossy"):
            locks.ensure_held("lossy")
    finally:
        lock.release()
    locks.ensure_held("lossy")  # released: nothing held, nothing to complain about
