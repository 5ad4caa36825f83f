"""Platform-wide settings kept in etcd (not per app), as Deis v1 kept `/deis/controller/schedulerModule`.

platform/scheduler     "docker" | "swarm" | "fleet"   which backend runs apps (default docker)
"""

from __future__ import annotations

from releaser.store import Store

DEFAULT_SCHEDULER = "docker"


def scheduler(store: Store) -> str:
    value = store.get("platform/scheduler")
    return str(value) if value else DEFAULT_SCHEDULER


def set_scheduler(store: Store, name: str) -> None:
    store.put("platform/scheduler", name)
