"""Apps, users, keys, collaborators and formation, as kept in etcd. Config lives in releases.

Layout (all JSON, under /deis):
    users/NAME                {"admin": bool, "created": ts}
    keys/FINGERPRINT          {"user": NAME, "key": "ssh-ed25519 AAAA... comment", "name": comment}
    apps/APP/meta             {"owner": NAME, "created": ts}
    apps/APP/formation        {"web": 1, ...}
    apps/APP/perms/USER       {"created": ts}
    apps/APP/releases/NNNNNN  see releaser.releases
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from core.names import check_app, check_user, shown
from releaser.locks import AppLock
from releaser.store import Store

# Changes to people that must never leave the platform without a way in (the last key of a
# user, the last admin) are checked and made under this one lock (no app is named like it).
PEOPLE_LOCK = "_people"


# -- users and keys ----------------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    name: str
    admin: bool


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of one `type base64 [comment]` line."""
    parts = public_key.split()
    if len(parts) < 2:
        raise ValidationError("that is not an SSH public key: expected 'TYPE BASE64 [COMMENT]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise ValidationError("that is not an SSH public key: its key data is not base64") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _key_id(fp: str) -> str:
    # etcd keys are paths: '/' and '+' in base64 would make directories or get mangled. etcd v2 also
    # hides keys that start with '_' from directory listings (1 fingerprint in 64 would vanish from
    # keys:list while still logging in), so those get a letter in front (44 characters then, against
    # 43 for every other SHA256 fingerprint: no two keys can share an id).
    kid = fp.replace("SHA256:", "").replace("/", "_").replace("+", "-")
    return f"k{kid}" if kid.startswith("_") else kid


def get_user(store: Store, name: str) -> User | None:
    data = store.get(f"users/{name}")
    return None if data is None else User(name, bool(data.get("admin")))


def list_users(store: Store) -> list[User]:
    return sorted(
        (User(n, bool(d and d.get("admin"))) for n, d in store.children("users").items()),
        key=lambda u: u.name,
    )


def ensure_user(store: Store, name: str, admin: bool = False) -> User:
    check_user(name)
    user = get_user(store, name)
    if user is None or (admin and not user.admin):
        store.put(f"users/{name}", {"admin": admin or bool(user and user.admin), "created": time.time()})
    return User(name, admin or bool(user and user.admin))


def add_key(store: Store, user: str, public_key: str) -> str:
    """Attach a public key to a user; returns its fingerprint. A key belongs to one user only."""
    line = " ".join(public_key.strip().split())
    if "\n" in public_key.strip() or not line.startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValidationError("expected exactly one OpenSSH public key line, like 'ssh-ed25519 AAAA... name'")
    fp = fingerprint(line)
    parts = line.split()
    record = {"user": user, "key": line, "name": shown(parts[2]) if len(parts) > 2 else fp}
    if not store.create(f"keys/{_key_id(fp)}", record):
        owner = (store.get(f"keys/{_key_id(fp)}") or {}).get("user")
        raise Conflict(f"key {fp} is already registered to {owner}")
    return fp


def user_for_key(store: Store, fp: str) -> str | None:
    data = store.get(f"keys/{_key_id(fp)}")
    return None if data is None else str(data["user"])


def list_keys(store: Store, user: str | None = None) -> list[dict[str, str]]:
    out = []
    for _, data in sorted(store.children("keys").items()):
        if data and (user is None or data["user"] == user):
            out.append(
                {"user": data["user"], "name": shown(data["name"]), "fingerprint": fingerprint(data["key"])}
            )
    return out


def find_key(store: Store, user: str | None, name_or_fp: str) -> dict[str, str]:
    """One key by its name (comment) or fingerprint; `user=None` searches every user's keys.

    A name two keys share is refused rather than guessed: the fingerprint tells them apart."""
    found = [
        {
            "id": kid,
            "user": data["user"],
            "name": shown(data["name"]),
            "fingerprint": fingerprint(data["key"]),
        }
        for kid, data in sorted(store.children("keys").items())
        if data and (user is None or data["user"] == user)
    ]
    by_fp = [k for k in found if k["fingerprint"] == name_or_fp]
    matches = by_fp or [k for k in found if k["name"] == name_or_fp]
    if not matches:
        raise NotFound(f"no key named {name_or_fp!r}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} keys are named {name_or_fp!r}: remove one by its fingerprint")
    return matches[0]


def remove_key(store: Store, user: str | None, name_or_fp: str) -> str:
    """Remove a key by its name (comment) or fingerprint; `user=None` means any user's (admin)."""
    key = find_key(store, user, name_or_fp)
    store.delete(f"keys/{key['id']}")
    return key["fingerprint"]


def remove_key_not_last(store: Store, user: str, name_or_fp: str, by: str) -> str:
    """`remove_key` of one of `user`'s keys unless it is their last one (Conflict); the check and
    the removal are one step for every caller (two removals at once cannot both pass it)."""
    with _people_lock(store, by):
        key = find_key(store, user, name_or_fp)
        if len(list_keys(store, user)) == 1:
            raise Conflict(
                f"{key['name']} is your last key: add another first (keys:add),"
                " or you could never log in again"
            )
        return remove_key(store, user, key["fingerprint"])


def revoke_admin_not_last(store: Store, name: str, by: str) -> None:
    """Revoke `name`'s admin unless they are the last admin (Conflict), as one step."""
    with _people_lock(store, by):
        if [u.name for u in list_users(store) if u.admin] == [name]:
            raise Conflict(f"{name} is the last admin: make someone else admin first")
        set_admin(store, name, False)


def _people_lock(store: Store, by: str) -> AppLock:
    lock = AppLock(store, PEOPLE_LOCK, owner=by)
    lock.acquire(wait=30)
    return lock


def set_admin(store: Store, name: str, admin: bool) -> None:
    """Grant or revoke platform admin; the user must exist."""
    data, index = store.get_with_index(f"users/{check_user(name)}")
    if data is None:
        raise NotFound(f"no user named {name}")
    if not store.swap(f"users/{name}", {**data, "admin": admin}, index):
        raise Conflict(f"user {name} changed meanwhile; try again")


# -- apps ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class App:
    name: str
    owner: str
    created: float


def get_app(store: Store, name: str) -> App | None:
    meta = store.get(f"apps/{name}/meta")
    return None if meta is None else App(name, meta["owner"], meta["created"])


def require_app(store: Store, name: str) -> App:
    check_app(name)
    app = get_app(store, name)
    if app is None:
        raise NotFound(f"app {name} does not exist")
    return app


def create_app(store: Store, name: str, owner: str) -> App:
    check_app(name)
    created = time.time()
    if not store.create(f"apps/{name}/meta", {"owner": owner, "created": created}):
        raise Conflict(f"app {name} already exists")
    return App(name, owner, created)


def list_apps(store: Store) -> list[App]:
    apps = []
    for name in sorted(store.children("apps")):
        app = get_app(store, name)
        if app is not None:
            apps.append(app)
    return apps


def destroy_app(store: Store, name: str) -> None:
    store.delete(f"apps/{name}", recursive=True)


# -- destroyed names whose images other apps still run -------------------------------------------
# A destroyed app's images that other apps deployed (builds:create) stay in the registry under its
# name. Until none runs them the name is held (a new owner's build could take the same tag, and the
# old app's code would be theirs to deploy); `retired/NAME` lists them.
def retire_name(store: Store, name: str, images: frozenset[str]) -> None:
    store.put(f"retired/{name}", {"images": sorted(images), "destroyed": time.time()})


def retired_images(store: Store, name: str) -> list[str]:
    record = store.get(f"retired/{name}")
    return list(record["images"]) if record else []


def forget_retired(store: Store, name: str) -> None:
    store.delete(f"retired/{name}")


# -- permissions ---------------------------------------------------------------------------------
def collaborators(store: Store, app: str) -> list[str]:
    return sorted(store.children(f"apps/{app}/perms"))


def add_collaborator(store: Store, app: str, user: str) -> None:
    if not store.create(f"apps/{app}/perms/{user}", {"created": time.time()}):
        raise Conflict(f"{user} is already a collaborator on {app}")


def remove_collaborator(store: Store, app: str, user: str) -> None:
    if not store.delete(f"apps/{app}/perms/{user}"):
        raise NotFound(f"{user} is not a collaborator on {app}")


def can_access(store: Store, user: User, app: App) -> bool:
    return user.admin or app.owner == user.name or user.name in collaborators(store, app.name)


def role(store: Store, user: User, app: App) -> str | None:
    """How `user` relates to `app`: owner, admin, collaborator, or None (a stranger)."""
    if app.owner == user.name:
        return "owner"
    if user.admin:
        return "admin"
    return "collaborator" if user.name in collaborators(store, app.name) else None


def authorize(store: Store, user: User, app_name: str) -> App:
    """The app, if `user` may act on it; otherwise NotFound, one line.

    A stranger hears exactly what a missing app says, so app names do not leak (Deis v1 did the same)."""
    check_app(app_name)
    app = get_app(store, app_name)
    if app is None or not can_access(store, user, app):
        raise NotFound(f"app {app_name} does not exist or is not yours")
    return app


def require_manager(store: Store, user: User, app: App, action: str) -> None:
    """Only the owner or an admin may `action` (destroy, manage collaborators); collaborators may not."""
    if role(store, user, app) not in ("owner", "admin"):
        raise PermissionDenied(f"only the owner of {app.name} ({app.owner}) or an admin may {action}")


def apps_for(store: Store, user: User) -> list[App]:
    return [a for a in list_apps(store) if can_access(store, user, a)]


# -- formation (not versioned, as in Deis v1: a rollback keeps the current scale) --------------
def get_formation(store: Store, app: str) -> dict[str, int]:
    return {k: int(v) for k, v in (store.get(f"apps/{app}/formation") or {}).items()}


def set_formation(store: Store, app: str, formation: dict[str, int]) -> None:
    # Zeros are kept: "scaled to zero" differs from "never scaled" (the build's default).
    store.put(f"apps/{app}/formation", {k: int(v) for k, v in formation.items() if int(v) >= 0})


# -- routes: what the router was last told for an app (the reconciler compares against it) -------
def set_routes(store: Store, app: str, endpoints: list[str]) -> None:
    store.put(f"apps/{app}/routes", sorted(endpoints))


def get_routes(store: Store, app: str) -> list[str] | None:
    routes = store.get(f"apps/{app}/routes")
    return None if routes is None else [str(r) for r in routes]
