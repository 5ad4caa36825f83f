"""Scheduled backups of services: once a day at the service's HH:MM (UTC), a dump is written to
STATE/services/NAME/backups/NAME-YYYYMMDDTHHMMSSZ.(dump|rdb) (root only, 0600) and all but the
newest `keep` are removed. A thread of the appliance (`start_thread`) looks every 30 s; a dump
is written to a temporary name first, so a failed or interrupted one never counts as a backup.
"""

from __future__ import annotations

import calendar
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance import addons
from appliance.platform import Platform
from core.errors import DeisError
from releaser import services
from releaser.services import Service
from scheduler.base import Stdio

log = logging.getLogger("deis.backups")
CHECK_EVERY = 30.0
_SUFFIX = {"postgres": ".dump", "redis": ".rdb"}


@dataclass(frozen=True)
class Backup:
    file: str
    created: float
    size: int


def directory(p: Platform, name: str) -> Path:
    return addons.where(p, name).root / "backups"


def listing(p: Platform, svc: Service) -> list[Backup]:
    """The kept backups, newest first."""
    found = []
    folder = directory(p, svc.name)
    if not folder.is_dir():
        return []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
            st = entry.stat(follow_symlinks=False)
            found.append(Backup(entry.name, _stamp(entry.name, svc.name) or st.st_mtime, st.st_size))
    return sorted(found, key=lambda b: (b.created, b.file), reverse=True)


def _stamp(file: str, name: str) -> float | None:
    """The time in a backup's name (NAME-YYYYMMDDTHHMMSSZ.ext): when it was taken."""
    stem = file[len(name) + 1 :].split(".", 1)[0]
    try:
        return float(calendar.timegm(time.strptime(stem, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def take(p: Platform, svc: Service, now: float | None = None) -> Backup:
    """One backup now, kept under the state dir."""
    folder = directory(p, svc.name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    final = folder / f"{svc.name}-{stamp}{_SUFFIX[svc.kind]}"
    partial = folder / f".{final.name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    err_r, err_w = os.pipe()
    try:
        rc = addons.backup(p, svc, Stdio(stdin=None, stdout=fd, stderr=err_w))
        os.fsync(fd)
    finally:
        os.close(fd)
        os.close(err_w)
        why = os.read(err_r, 4096).decode("utf-8", "replace").strip()
        os.close(err_r)
    if rc != 0:
        partial.unlink(missing_ok=True)
        raise DeisError(f"backup of {svc.name} failed (exit status {rc}): {why}")
    os.replace(partial, final)
    return Backup(final.name, _stamp(final.name, svc.name) or time.time(), final.stat().st_size)


def rotate(p: Platform, svc: Service, keep: int) -> list[str]:
    gone = []
    for old in listing(p, svc)[keep:]:
        (directory(p, svc.name) / old.file).unlink(missing_ok=True)
        gone.append(old.file)
    return gone


def due(daily: str, last: float | None, now: float) -> bool:
    """Whether today's HH:MM (UTC) has passed with no backup since (pure)."""
    hour, minute = services.check_schedule(daily, 1)
    day = time.gmtime(now)
    today = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hour, minute, 0))
    return now >= today and (last is None or last < today)


def run_due(p: Platform, now: float | None = None) -> list[str]:
    """Take every backup that is due; the files written."""
    now = time.time() if now is None else now
    made = []
    for svc in services.list_all(p.store):
        schedule = services.get_schedule(p.store, svc.name)
        if not schedule:
            continue
        kept = listing(p, svc)
        if not due(str(schedule["time"]), kept[0].created if kept else None, now):
            continue
        try:
            made.append(take(p, svc, now).file)
            rotate(p, svc, int(str(schedule["keep"])))
        except DeisError as exc:
            log.warning("scheduled backup: %s", exc)
    return made


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(CHECK_EVERY):
            try:
                run_due(p)
            except Exception:  # etcd or docker away for a moment: the next round tries again
                log.exception("scheduled backups")

    threading.Thread(target=loop, name="backups", daemon=True).start()
    return stop
