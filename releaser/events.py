"""Platform events per app (who pushed, scaled, changed config, rolled back), for `logs`.

apps/APP/events/<in-order key>   {"time": ts, "user": NAME, "message": "..."}   kept 30 days
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from releaser.store import Store

TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class Event:
    time: float
    user: str
    message: str


def record(store: Store, app: str, user: str, message: str) -> None:
    store.append(f"apps/{app}/events", {"time": time.time(), "user": user, "message": message}, ttl=TTL)


def recent(store: Store, app: str, limit: int | None = None) -> list[Event]:
    """Oldest first; the last `limit` only, if given."""
    items = store.children(f"apps/{app}/events")
    events = [
        Event(float(d["time"]), str(d["user"]), str(d["message"])) for _, d in sorted(items.items()) if d
    ]
    return events[-limit:] if limit else events
