"""The SSH server's own limits (asyncssh has none): connections not yet authenticated, per address and
in all, and each user's open sessions."""

from __future__ import annotations

from typing import Protocol


class Gate:
    """What the server counts itself (asyncssh has no such limits): connections that have not
    authenticated yet, and each user's open sessions. Used on the event loop only.

    Each client address is sure of `max_preauth_per_address` of the `max_preauth` slots. A burst from
    one address may take more while they are free; once all are taken, a newcomer from an address
    under its share closes the oldest waiting connection of an address over its share. So one
    address that opens connections and never authenticates cannot lock everyone else out."""

    def __init__(self, max_preauth: int, max_sessions: int, max_preauth_per_address: int = 0) -> None:
        self.max_preauth = max_preauth
        self.max_per_address = max_preauth_per_address or max_preauth
        self.max_sessions = max_sessions
        self.waiting: dict[str, list[Evictable]] = {}  # address -> its connections, oldest first
        self.sessions: dict[str, int] = {}

    @property
    def preauth(self) -> int:
        return sum(len(v) for v in self.waiting.values())

    def admit_connection(self, address: str, conn: Evictable) -> bool:
        if self.preauth >= self.max_preauth:
            victim = self._victim(address)
            if victim is None:
                return False
            victim[1].evict()
            self.authenticated(*victim)
        self.waiting.setdefault(address, []).append(conn)
        return True

    def _victim(self, address: str) -> tuple[str, Evictable] | None:
        if len(self.waiting.get(address, ())) >= self.max_per_address:
            return None  # the newcomer's address has its share already
        top = max(self.waiting, key=lambda a: len(self.waiting[a]), default=None)
        if top is None or len(self.waiting[top]) <= self.max_per_address:
            return None
        return top, self.waiting[top][0]

    def authenticated(self, address: str, conn: Evictable) -> None:
        """`conn` waits no more (it authenticated, or went away); twice is harmless."""
        left = [c for c in self.waiting.get(address, ()) if c is not conn]
        if left:
            self.waiting[address] = left
        else:
            self.waiting.pop(address, None)

    def open_session(self, user: str) -> bool:
        if self.sessions.get(user, 0) >= self.max_sessions:
            return False
        self.sessions[user] = self.sessions.get(user, 0) + 1
        return True

    def close_session(self, user: str) -> None:
        left = self.sessions.get(user, 0) - 1
        if left > 0:
            self.sessions[user] = left
        else:
            self.sessions.pop(user, None)


class Evictable(Protocol):
    def evict(self) -> None: ...
