"""App volumes: a directory per app and volume under the state dir (STATE/volumes/APP/NAME), bound
into the app's containers (releaser.storage says where and for which types). Mounting or unmounting
cuts a new release with the same build and config and rolls it out like `config:set`: old and new
containers share the directory during the switch, so no request fails. The data stays until the app
is destroyed (apps:destroy --confirm); storage:unmount only takes the mount away.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance import pipeline
from appliance.platform import Platform
from core.output import Output
from releaser import events, releases, storage
from releaser.storage import Volume


def directory(p: Platform, app: str, name: str) -> Path:
    return p.settings.state_dir / "volumes" / app / name


def mounts(p: Platform, app: str, types: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    """For each process type (and `run`), the (host, inside) pairs it gets (pipeline.deployment_for)."""
    vols = storage.list_volumes(p.store, app)
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for ptype in [*types, "run", "release"]:
        chosen = tuple((str(directory(p, app, v.name)), v.path) for v in vols if v.applies_to(ptype))
        if chosen:
            out[ptype] = chosen
    return out


def _make(p: Platform, app: str, name: str) -> None:
    root = p.settings.state_dir / "volumes"
    root.mkdir(mode=0o700, exist_ok=True)  # no host user goes past it
    (root / app).mkdir(mode=0o700, exist_ok=True)
    leaf = root / app / name
    leaf.mkdir(exist_ok=True)
    leaf.chmod(0o777)  # whatever user the app runs as writes there (it sees only this directory)


def mount(p: Platform, app: str, volume: Volume, user: str, out: Output) -> None:
    """Callers hold the app's lock."""
    _make(p, app, volume.name)
    storage.add(p.store, app, volume)
    what = f"{volume.name} at {volume.path}" + (f" ({', '.join(volume.types)})" if volume.types else "")
    out.step(f"Mounting {what}")
    try:
        release = releases.prepare(p.store, app, by=user, summary=f"{user} mounted {what}")
        pipeline.roll_out(p, release, out)
    except BaseException:
        storage.remove(p.store, app, volume.name)
        raise
    events.record(p.store, app, user, f"{user} mounted {what}")


def unmount(p: Platform, app: str, name: str, user: str, out: Output) -> None:
    volume = storage.remove(p.store, app, name)
    out.step(f"Unmounting {name} from {volume.path} (its data is kept)")
    try:
        release = releases.prepare(p.store, app, by=user, summary=f"{user} unmounted {name}")
        pipeline.roll_out(p, release, out)
    except BaseException:
        storage.add(p.store, app, volume)
        raise
    events.record(p.store, app, user, f"{user} unmounted {name}")


def forget_app(p: Platform, app: str) -> None:
    """`app` is being destroyed for good: its volumes' data goes too."""
    folder = p.settings.state_dir / "volumes" / app
    if folder.exists():
        shutil.rmtree(folder)
