"""Backing services as kept in etcd, and who may do what with them.

    services/NAME/meta          {"kind": "postgres", "owner": USER, "created": ts}
    services/NAME/links/APP     {"variable": "DATABASE_URL", "created": ts, "by": USER}
    services/NAME/schedule      {"time": "HH:MM", "keep": N}   (daily backups, UTC)

The creator owns a service; admins may do anything; the people of an app linked to it (its owner
and collaborators) may use it (info without the URL, connect, backup, logs, restart) but not
manage it (link, unlink, restore, destroy, schedules). To everyone else it does not exist.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from core.names import check_app
from releaser import apps
from releaser.apps import User
from releaser.store import Store

KINDS = ("postgres", "redis")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
MAX_KEEP = 100


@dataclass(frozen=True)
class Service:
    name: str
    kind: str
    owner: str
    created: float
    links: dict[str, str] = field(default_factory=dict)  # app -> variable


def check_name(name: str) -> str:
    try:
        return check_app(name)
    except ValidationError:
        raise ValidationError(
            f"invalid service name {name!r}: lowercase letters, digits and dashes, starting with a letter"
        ) from None


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValidationError(f"unknown service kind {kind!r}: one of {', '.join(KINDS)}")
    return kind


def get(store: Store, name: str) -> Service | None:
    meta = store.get(f"services/{name}/meta")
    if meta is None:
        return None
    links = {app: str(d["variable"]) for app, d in store.children(f"services/{name}/links").items() if d}
    return Service(name, str(meta["kind"]), str(meta["owner"]), float(meta["created"]), links)


def create(store: Store, name: str, kind: str, owner: str) -> Service:
    check_name(name)
    check_kind(kind)
    created = time.time()
    if not store.create(f"services/{name}/meta", {"kind": kind, "owner": owner, "created": created}):
        raise Conflict(f"service {name} already exists")
    return Service(name, kind, owner, created)


def forget(store: Store, name: str) -> None:
    store.delete(f"services/{name}", recursive=True)


def list_all(store: Store) -> list[Service]:
    found = (get(store, name) for name in sorted(store.children("services")))
    return [s for s in found if s is not None]


def role(store: Store, user: User, svc: Service) -> str | None:
    """owner, admin, user (someone with access to a linked app), or None (a stranger)."""
    if svc.owner == user.name:
        return "owner"
    if user.admin:
        return "admin"
    for app_name in svc.links:
        app = apps.get_app(store, app_name)
        if app is not None and apps.can_access(store, user, app):
            return "user"
    return None


def authorize(store: Store, user: User, name: str, manage: bool = False) -> Service:
    """The service, if `user` may use it (or manage it); a stranger hears what a missing one says."""
    check_name(name)
    svc = get(store, name)
    who = None if svc is None else role(store, user, svc)
    if svc is None or who is None:
        raise NotFound(f"service {name} does not exist or is not yours")
    if manage and who not in ("owner", "admin"):
        raise PermissionDenied(f"only the owner of service {name} ({svc.owner}) or an admin may do that")
    return svc


def visible(store: Store, user: User) -> list[Service]:
    return [s for s in list_all(store) if role(store, user, s) is not None]


# -- links ---------------------------------------------------------------------------------------
def add_link(store: Store, name: str, app: str, variable: str, by: str) -> None:
    record = {"variable": variable, "created": time.time(), "by": by}
    if not store.create(f"services/{name}/links/{app}", record):
        raise Conflict(f"service {name} is linked to {app} already")


def remove_link(store: Store, name: str, app: str) -> bool:
    return store.delete(f"services/{name}/links/{app}")


def linked_to(store: Store, app: str) -> list[Service]:
    """The services linked to `app`, by name."""
    return [s for s in list_all(store) if app in s.links]


# -- backup schedules ----------------------------------------------------------------------------
def check_schedule(daily: str, keep: int) -> tuple[int, int]:
    m = _TIME.match(daily)
    if m is None:
        raise ValidationError(f"invalid time {daily!r}: expected HH:MM (24-hour, UTC), like 03:30")
    if not 1 <= keep <= MAX_KEEP:
        raise ValidationError(f"--keep must be between 1 and {MAX_KEEP}")
    return int(m[1]), int(m[2])


def set_schedule(store: Store, name: str, daily: str, keep: int) -> None:
    check_schedule(daily, keep)
    store.put(f"services/{name}/schedule", {"time": daily, "keep": keep})


def get_schedule(store: Store, name: str) -> dict[str, object] | None:
    data = store.get(f"services/{name}/schedule")
    return data if isinstance(data, dict) else None
