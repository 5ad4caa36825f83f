"""Per-app deploy lock in etcd: one owner, a TTL renewed while held, so a crashed deploy never blocks
an app for longer than the TTL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from core.errors import Conflict
from releaser.store import Store

# The locks this process holds, by app: the pipeline asks `ensure_held` before it switches traffic,
# whichever thread holds the lock (the SSH session) and whichever runs the deploy (hooks.service).
_held: dict[str, AppLock] = {}
_held_guard = threading.Lock()


def ensure_held(app: str) -> None:
    """Raise Conflict if this process held `app`'s lock and has lost it (it expired: etcd was
    unreachable for longer than its TTL, and someone else may act on the app now)."""
    with _held_guard:
        lock = _held.get(app)
    if lock is not None and lock.lost.is_set():
        raise Conflict(
            f"lost the lock on {lock.app} (etcd unreachable for over {lock.ttl}s): stopped, nothing switched"
        )


class AppLock:
    def __init__(self, store: Store, app: str, owner: str, ttl: int = 20) -> None:
        self.store = store
        self.key = f"locks/{app}"
        self.app = app
        self.ttl = ttl
        self.value = {"owner": owner, "token": uuid.uuid4().hex, "since": time.time()}
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.lost = threading.Event()

    def acquire(self, wait: float, on_wait: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Take the lock, waiting up to `wait` seconds; `on_wait(holder)` is called once if we must wait."""
        deadline = time.monotonic() + wait
        told = False
        while not self.store.create(self.key, self.value, ttl=self.ttl):
            holder = self.store.get(self.key)
            if holder is None:
                continue  # released between our two calls
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Conflict(
                    f"{self.app} is busy: {holder.get('owner', 'someone')} has been deploying it for "
                    f"{time.time() - float(holder.get('since', time.time())):.0f}s; try again later"
                )
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            self.store.wait(self.key, timeout=min(remaining, 5.0))
        self._stop.clear()
        self.lost.clear()
        self._keeper = threading.Thread(target=self._keep, name=f"lock-{self.app}", daemon=True)
        self._keeper.start()
        with _held_guard:
            _held[self.app] = self

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.store.refresh(self.key, self.value, self.ttl):
                    self.lost.set()  # expired (and maybe taken): the holder must not switch traffic now
                    return
            except Exception:
                continue

    def release(self) -> None:
        with _held_guard:
            if _held.get(self.app) is self:
                del _held[self.app]
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
            self._keeper = None
        self.store.delete(self.key, if_value=self.value)

    def __enter__(self) -> AppLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
