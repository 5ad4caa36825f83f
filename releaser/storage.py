"""An app's volumes (storage:mount), as kept in etcd:

    apps/APP/volumes/NAME    {"path": "/data", "types": ["web"], "created": ts}   (types []: every type)

A volume is a directory under the state dir (appliance.storage) bound read-write at `path` into the
app's containers of those types; one-offs (`run`) get the volumes of every type.
"""

from __future__ import annotations

import posixpath
import re
import time
from dataclasses import dataclass

from core.errors import Conflict, NotFound, ValidationError
from core.names import check_app, check_process_type
from releaser.store import Store

MAX_VOLUMES = 10  # per app
# Paths a volume may not cover: the container's own system directories.
_RESERVED = ("/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/proc", "/sys", "/dev", "/run", "/tmp")
_KERNEL = ("/proc", "/sys", "/dev")  # nor anything below these
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    types: tuple[str, ...]  # empty: every process type

    def applies_to(self, ptype: str) -> bool:
        return not self.types or ptype in self.types or ptype == "run"


def parse(spec: str, types: list[str] | None) -> Volume:
    """`NAME:/path` and the process types it is for, checked."""
    name, sep, path = spec.partition(":")
    if not sep:
        raise ValidationError(f"expected NAME:/path, like data:/app/data, not {spec!r}")
    try:
        check_app(name)
    except ValidationError:
        raise ValidationError(f"invalid volume name {name!r}: lowercase letters, digits and dashes") from None
    if (
        not _PATH_RE.match(path)
        or len(path) > 255
        or posixpath.normpath(path) != path.rstrip("/")
        or ".." in path
    ):
        raise ValidationError(
            f"invalid mount path {path!r}: an absolute path of letters, digits, . _ - and /"
        )
    path = path.rstrip("/") or "/"
    under_kernel = any(path.startswith(k + "/") for k in _KERNEL)
    if path in _RESERVED or under_kernel:
        raise ValidationError(f"a volume may not be mounted at {path}: choose a directory of the app's own")
    return Volume(name, path, tuple(sorted({check_process_type(t) for t in types or []})))


def list_volumes(store: Store, app: str) -> list[Volume]:
    found = []
    for name, d in sorted(store.children(f"apps/{app}/volumes").items()):
        if d:
            found.append(Volume(name, str(d["path"]), tuple(d.get("types") or ())))
    return found


def add(store: Store, app: str, volume: Volume) -> None:
    current = list_volumes(store, app)
    if len(current) >= MAX_VOLUMES:
        raise Conflict(f"{app} has {MAX_VOLUMES} volumes already: unmount one first")
    for other in current:
        if other.path == volume.path:
            raise Conflict(f"{app} mounts {other.name} at {volume.path} already")
    record = {"path": volume.path, "types": list(volume.types), "created": time.time()}
    if not store.create(f"apps/{app}/volumes/{volume.name}", record):
        raise Conflict(f"{app} mounts a volume {volume.name} already: storage:unmount it first")


def remove(store: Store, app: str, name: str) -> Volume:
    for v in list_volumes(store, app):
        if v.name == name:
            store.delete(f"apps/{app}/volumes/{name}")
            return v
    raise NotFound(f"{app} has no volume {name}: see storage:list")
