"""Request metrics: the router's per-app access logs (routerconf.accesslog) rolled up per minute into
the metric store (releaser.metricstore), in the appliance (`deis serve`) as one thread.

- Every POLL seconds each `logs/APP.access.log` is read on from where it was left (its position is
  kept per file, by inode), whole lines only; each request lands in the rollup of its minute and of
  the process type whose container answered (the endpoint, looked up in the backend; requests no
  container answered, the router's own 503 pages, count as `(router)`).
- Every FLUSH seconds the rollups go to the store, then the positions to disk: a crash between the
  two counts those few seconds twice, never loses them; a restart reads on from the positions.
- A log over ROTATE_BYTES is renamed to `APP.access.log.1` and nginx reopens its logs; the renamed
  one is read to its end and removed once nginx no longer writes to it, so the logs never fill the
  disk and no request is missed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.platform import Platform
from core.names import APP_RE
from releaser.metricstore import MetricStore, Rollup
from routerconf import accesslog

log = logging.getLogger("deis.metrics")

POLL = 1.0
FLUSH = 5.0
ROTATE_BYTES = 16 * 1024 * 1024
SETTLED = 3.0  # seconds a rotated log must be unchanged (and read) before it goes
READ_CHUNK = 4 * 1024 * 1024
ROUTER_TYPE = "(router)"
TYPES_REFRESH = 10.0
SUFFIX = ".access.log"


class AccessTail:
    """Reads the access logs of a router's log dir on from where it left them, across rotations."""

    def __init__(self, logs_dir: Path, positions_file: Path) -> None:
        self.dir, self.file = logs_dir, positions_file
        self.positions: dict[str, int] = {}  # "dev:ino" -> bytes read
        with contextlib.suppress(OSError, ValueError):
            self.positions = {str(k): int(v) for k, v in json.loads(positions_file.read_text()).items()}

    def _files(self) -> list[tuple[str, Path]]:
        found = []
        for path in sorted(self.dir.glob(f"*{SUFFIX}*")):
            app, _, rest = path.name.partition(SUFFIX)
            if rest in ("", ".1") and APP_RE.fullmatch(app) and path.is_file() and not path.is_symlink():
                found.append((app, path))
        return sorted(found, key=lambda f: f[1].name.endswith(".1"), reverse=True)  # rotated ones first

    def read(self) -> dict[str, list[accesslog.Hit]]:
        """app -> the requests logged since the last read, oldest first."""
        hits: dict[str, list[accesslog.Hit]] = {}
        seen = set()
        for app, path in self._files():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                key = f"{st.st_dev}:{st.st_ino}"
                seen.add(key)
                start = self.positions.get(key, 0)
                if st.st_size < start:  # truncated by hand: read it again from its start
                    start = 0
                f.seek(start)
                data = f.read(READ_CHUNK)
            end = data.rfind(b"\n") + 1  # whole lines only; the rest is read next time
            self.positions[key] = start + end
            for raw in data[:end].decode(errors="replace").splitlines():
                hit = accesslog.parse(raw)
                if hit is not None:
                    hits.setdefault(app, []).append(hit)
        self.positions = {k: v for k, v in self.positions.items() if k in seen}
        return hits

    def rotate(self, reopen: Callable[[], object], now: float | None = None) -> None:
        """Rename logs that grew past ROTATE_BYTES (nginx reopens); remove rotated ones read to their end."""
        now = now or time.time()
        for app, path in self._files():
            with contextlib.suppress(OSError):
                st = path.stat()
                key = f"{st.st_dev}:{st.st_ino}"
                if path.name.endswith(".1"):
                    if self.positions.get(key, 0) >= st.st_size and now - st.st_mtime > SETTLED:
                        path.unlink()
                        self.positions.pop(key, None)
                elif st.st_size > ROTATE_BYTES and not (self.dir / f"{app}{SUFFIX}.1").exists():
                    path.rename(self.dir / f"{app}{SUFFIX}.1")
                    reopen()

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.positions))
        os.replace(tmp, self.file)


class MetricsCollector:
    def __init__(self, p: Platform) -> None:
        self.p = p
        self.store = MetricStore(p.settings.metrics_dir)
        self.tail = AccessTail(p.settings.nginx_dir / "logs", p.settings.metrics_dir / "positions.json")
        self.pending: dict[str, dict[tuple[int, str], Rollup]] = {}
        self._types: dict[str, tuple[float, dict[str, str]]] = {}  # app -> (when, endpoint -> type)
        self._lock = threading.Lock()

    def _ptype(self, app: str, endpoint: str) -> str:
        if not endpoint:
            return ROUTER_TYPE
        when, types = self._types.get(app, (0.0, {}))
        if endpoint not in types and time.monotonic() - when > TYPES_REFRESH:
            try:
                found = self.p.backend.instances(app)
            except Exception as exc:  # the engine is away: label by the default type meanwhile
                log.warning("metrics: cannot list %s's containers: %s", app, exc)
                found = []
            types = {i.endpoint: i.name.type for i in found if i.endpoint}
            self._types[app] = (time.monotonic(), types)
        return types.get(endpoint, "web")

    def step(self) -> int:
        """Read what the router logged since the last step into the pending rollups."""
        count = 0
        for app, hits in self.tail.read().items():
            parts = self.pending.setdefault(app, {})
            for h in hits:
                key = (int(h.time // 60) * 60, self._ptype(app, h.upstream))
                parts.setdefault(key, Rollup()).add(h.status, h.latency, h.bytes, h.path)
                count += 1
        return count

    def flush(self) -> None:
        with self._lock:
            logs = self.tail.dir
            for app, parts in self.pending.items():
                # A destroyed app's log went with it (Router.remove): its last seconds go too.
                if (logs / f"{app}{SUFFIX}").exists() or (logs / f"{app}{SUFFIX}.1").exists():
                    self.store.write(app, parts)
            self.pending = {}
            self.tail.save()

    def run(self, stop: threading.Event) -> None:
        reopen = getattr(self.p.router, "reopen_logs", lambda: None)
        last_flush = last_prune = time.monotonic()
        while not stop.wait(POLL):
            try:
                self.step()
                if time.monotonic() - last_flush >= FLUSH:
                    self.flush()
                    self.tail.rotate(reopen)
                    last_flush = time.monotonic()
                if time.monotonic() - last_prune >= 3600:
                    self.store.prune()
                    last_prune = time.monotonic()
            except Exception:  # never let one bad moment end the metrics for good
                log.exception("metrics: step failed")
        with contextlib.suppress(Exception):
            self.step()
            self.flush()


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=MetricsCollector(p).run, args=(stop,), name="metrics", daemon=True).start()
    return stop
