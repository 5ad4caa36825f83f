"""Builds and numbered releases (Deis v1 numbering: v1 is the app's empty initial release).

A release is a build plus the app's config. Config lives only in releases: the app's config *is*
its latest release's, so a rollback restores code and config together and a failed deploy, whose
release is never recorded, leaves no trace. A release number is recorded create-only, so two
writers can never both get vN.

    apps/APP/releases/NNNNNN  {"version": N, "build": {...} | null, "config": {...}, "summary": "...",
                               "by": USER, "created": ts,
                               "limits": {"memory": {TYPE: "512m"}, "cpu": {TYPE: 512}},
                               "tags": {KEY: VALUE}}

Limits and tags live in the release like config does, so a rollback restores them too.
"""

from __future__ import annotations

import time
from typing import Any

from core.errors import Conflict, NotFound, ValidationError
from core.names import check_config_key, check_config_value
from core.records import Build, Release
from releaser.store import Store


def _key(app: str, version: int) -> str:
    return f"apps/{app}/releases/{version:06d}"


def parse_version(text: str) -> int:
    t = text[1:] if text[:1] in ("v", "V") else text
    if not t.isdigit() or int(t) < 1:
        raise ValidationError(f"invalid release {text!r}: expected vN, like v3")
    return int(t)


def list_releases(store: Store, app: str) -> list[Release]:
    """Newest first, as `deis releases` shows them."""
    items = store.children(f"apps/{app}/releases")
    return [Release.from_json(app, items[k]) for k in sorted(items, reverse=True) if items[k]]


def latest(store: Store, app: str) -> Release | None:
    """The app's current release. Read through the `current` pointer (two reads), not a listing of
    every release: the reconciler asks this of every app every few seconds and each push asks it."""
    version = store.get(f"apps/{app}/current")
    if isinstance(version, int):
        newest = store.get(_key(app, version))
        # A writer that died between recording vN+1 and moving the pointer leaves it behind.
        if newest is not None and store.get(_key(app, version + 1)) is None:
            return Release.from_json(app, newest)
    rels = list_releases(store, app)
    return rels[0] if rels else None


def get_release(store: Store, app: str, version: int) -> Release:
    data = store.get(_key(app, version))
    if data is None:
        raise NotFound(f"{app} has no release v{version}")
    return Release.from_json(app, data)


def apply_config(config: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """The config after `changes` (None unsets). Values are kept exactly; only NUL is refused."""
    new = dict(config)
    for key, value in changes.items():
        check_config_key(key)
        if value is None:
            if key not in new:
                raise NotFound(f"config var {key} is not set")
            new.pop(key)
        else:
            new[key] = check_config_value(key, value)
    return new


def prepare(
    store: Store,
    app: str,
    *,
    by: str,
    summary: str,
    build: Build | None = None,
    config: dict[str, str] | None = None,
    keep_build: bool = True,
    limits: dict[str, dict[str, Any]] | None = None,
    tags: dict[str, str] | None = None,
) -> Release:
    """The next release, not yet recorded: `build`/`config`/`limits`/`tags` default to the current
    release's."""
    current = latest(store, app)
    if build is None and keep_build and current is not None:
        build = current.build
    if config is None:
        config = dict(current.config) if current is not None else {}
    if limits is None:
        limits = dict(current.limits) if current is not None else {}
    if tags is None:
        tags = dict(current.tags) if current is not None else {}
    version = current.version + 1 if current is not None else 1
    return Release(app, version, build, config, summary, by, time.time(), limits, tags)


def record(store: Store, release: Release) -> Release:
    """Make `release` the app's current one; refuses a number that is taken."""
    if not store.create(_key(release.app, release.version), release.to_json()):
        raise Conflict(f"release v{release.version} of {release.app} was recorded by someone else")
    store.put(f"apps/{release.app}/current", release.version)
    return release


def initial(store: Store, app: str, by: str) -> Release:
    return record(store, prepare(store, app, by=by, summary=f"{by} created initial release"))
