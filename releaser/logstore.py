"""The per-app log store: every line an app's containers wrote (and its builds, release phases and
the store's own notes), kept on disk under the state dir, bounded per app, across retire, crash and
restarts. No etcd: lines are many and etcd is for state.

    STATE/logs/APP/00000001.jsonl     {"t": time, "s": "web.1", "r": 7, "m": "text", "c": "<container>"}
    STATE/logs/APP/00000002.jsonl     ... one JSON object a line, oldest segment first
    STATE/logs/APP/cursors.json       {"<container>": [time, n]}: the collector's place in each container

Bounds: at most `max_lines` lines and `max_bytes` bytes per app. Lines go to the newest segment,
which holds a quarter of either bound; once the app's segments together pass a bound, the oldest go.
So an app keeps between three quarters of a bound and the bound itself.

Writing never blocks a caller: `append` puts lines in the app's buffer (bounded by lines and bytes)
and one writer thread flushes every buffer each FLUSH seconds. A buffer that is full drops the line
and counts it; the count lands in the stream as a `deis` line ("dropped N lines of web.1 ..."), so a
chatty app costs its own lines, never another app's, and memory stays bounded.

A cursor is (time of the newest line kept from a container, how many lines of that time were kept):
a reader of the engine's log API resumes with `since` = that time and skips those n lines, so a
restart of the collector misses nothing and repeats nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("deis.logstore")

FLUSH = 0.05  # seconds between the writer's flushes
MAX_TEXT = 16 * 1024  # a longer line is cut (the engine splits lines at 16 KiB too)
BUFFER_LINES = 20_000  # per app, waiting for the writer
BUFFER_BYTES = 4 * 1024 * 1024

Cursor = tuple[float, int]
Position = tuple[int, int]  # (segment number, byte offset in it)


@dataclass(frozen=True)
class Line:
    time: float
    source: str  # web.1, run.3, release, build, deis
    release: int  # 0: none
    text: str
    container: str = ""  # the engine's id of the container that wrote it, if one did

    def encode(self) -> bytes:
        d: dict[str, object] = {
            "t": self.time,
            "s": self.source,
            "r": self.release,
            "m": self.text[:MAX_TEXT],
        }
        if self.container:
            d["c"] = self.container
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> Line | None:
        try:
            d = json.loads(raw)
            return cls(float(d["t"]), str(d["s"]), int(d.get("r") or 0), str(d["m"]), str(d.get("c") or ""))
        except (ValueError, KeyError, TypeError):
            return None  # a torn last line (a crash mid-write) is skipped


def _dropped(src: str, n: int) -> Line:
    return Line(time.time(), "deis", 0, f"dropped {n} lines of {src}: it wrote faster than they are kept")


def advance(cursor: Cursor, t: float) -> Cursor:
    """The cursor once a line of time `t` is kept."""
    if t > cursor[0]:
        return (t, 1)
    if t == cursor[0]:
        return (t, cursor[1] + 1)
    return cursor


@dataclass
class _Buffer:
    lines: list[Line] = field(default_factory=list)
    bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # source -> lines dropped


@dataclass
class _Segments:
    """What the writer knows of one app's files."""

    dir: Path
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # segment -> (lines, bytes)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    cursors_dirty: bool = False

    @property
    def newest(self) -> int:
        return max(self.sizes, default=1)


def _segment_nums(d: Path) -> list[int]:
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-6]) for n in names if n.endswith(".jsonl") and n[:-6].isdigit())


class LogStore:
    def __init__(self, root: Path, max_lines: int = 10_000, max_bytes: int = 20_000_000) -> None:
        self.root = root
        self.max_lines = max(4, max_lines)
        self.max_bytes = max(4096, max_bytes)
        self._lock = threading.Lock()  # buffers
        self._disk = threading.Lock()  # files and _Segments (the writer, and readers of positions)
        self._flushed = threading.Condition()
        self._buffers: dict[str, _Buffer] = {}
        self._apps: dict[str, _Segments] = {}
        self._forget_cursors: dict[str, set[str]] = {}
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        # Called by the writer with each app's lines once they are on disk (drains); must not block.
        self.listeners: list[Callable[[str, list[Line]], None]] = []

    # -- writing -------------------------------------------------------------------------------
    def append(self, app: str, lines: list[Line]) -> None:
        """Queue lines for the writer (never blocks on disk); a full buffer drops and counts them."""
        with self._lock:
            buf = self._buffers.setdefault(app, _Buffer())
            for line in lines:
                size = len(line.text) + 64
                if len(buf.lines) >= BUFFER_LINES or buf.bytes + size > BUFFER_BYTES:
                    buf.dropped[line.source] = buf.dropped.get(line.source, 0) + 1
                    continue
                buf.lines.append(line)
                buf.bytes += size
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="logstore-writer", daemon=True)
                self._writer.start()

    def forget_cursor(self, app: str, container: str) -> None:
        """The container is gone: its cursor is dropped at the next flush (after its last lines)."""
        with self._lock:
            self._forget_cursors.setdefault(app, set()).add(container)

    def _write_loop(self) -> None:
        while not self._stop.wait(FLUSH):
            try:
                self.flush()
            except OSError:  # a full disk: lines of this round are lost, the next round tries again
                time.sleep(1)

    def flush(self) -> None:
        """Write every buffered line now, then wake the followers."""
        with self._lock:
            buffers, self._buffers = self._buffers, {}
            forget, self._forget_cursors = self._forget_cursors, {}
        with self._disk:
            for app, buf in buffers.items():
                lines = buf.lines + [_dropped(src, n) for src, n in sorted(buf.dropped.items())]
                if lines:
                    self._write(app, lines)
                    self._tell(app, lines)
            for app, gone in forget.items():
                seg = self._segments(app)
                for cid in gone:
                    seg.cursors_dirty |= seg.cursors.pop(cid, None) is not None
            for seg in self._apps.values():
                if seg.cursors_dirty and seg.dir.is_dir():
                    tmp = seg.dir / "cursors.json.tmp"
                    tmp.write_text(json.dumps(seg.cursors))
                    os.replace(tmp, seg.dir / "cursors.json")
                    seg.cursors_dirty = False
        with self._flushed:
            self._flushed.notify_all()

    def _tell(self, app: str, lines: list[Line]) -> None:
        for listener in self.listeners:
            try:
                listener(app, lines)
            except Exception:  # a listener's bug must not stop the writer
                log.exception("log store listener failed")

    def _write(self, app: str, lines: list[Line]) -> None:
        seg = self._segments(app)
        seg.dir.mkdir(parents=True, exist_ok=True)
        per_lines, per_bytes = self.max_lines // 4, self.max_bytes // 4
        chunk: list[bytes] = []
        num = seg.newest
        n, size = seg.sizes.get(num, (0, 0))
        for line in lines:
            raw = line.encode()
            if n and (n + 1 > per_lines or size + len(raw) > per_bytes):
                self._append_file(seg, num, chunk, n, size)
                chunk, num, n, size = [], num + 1, 0, 0
            chunk.append(raw)
            n, size = n + 1, size + len(raw)
            if line.container:
                seg.cursors[line.container] = advance(seg.cursors.get(line.container, (0.0, 0)), line.time)
                seg.cursors_dirty = True
        self._append_file(seg, num, chunk, n, size)
        while len(seg.sizes) > 1 and (
            sum(c for c, _ in seg.sizes.values()) > self.max_lines
            or sum(b for _, b in seg.sizes.values()) > self.max_bytes
        ):
            oldest = min(seg.sizes)
            with contextlib.suppress(FileNotFoundError):
                (seg.dir / f"{oldest:08d}.jsonl").unlink()
            del seg.sizes[oldest]

    @staticmethod
    def _append_file(seg: _Segments, num: int, chunk: list[bytes], n: int, size: int) -> None:
        if chunk:
            with open(seg.dir / f"{num:08d}.jsonl", "ab") as f:
                f.write(b"".join(chunk))
        seg.sizes[num] = (n, size)

    def _segments(self, app: str) -> _Segments:
        """The writer's view of an app's files, read from disk the first time (under _disk)."""
        seg = self._apps.get(app)
        if seg is not None:
            return seg
        seg = self._apps[app] = _Segments(self.root / app)
        for num in _segment_nums(seg.dir):
            data = (seg.dir / f"{num:08d}.jsonl").read_bytes()
            if data and not data.endswith(b"\n"):  # torn by a crash: cut back to the last whole line
                data = data[: data.rfind(b"\n") + 1]
                with open(seg.dir / f"{num:08d}.jsonl", "r+b") as f:
                    f.truncate(len(data))
            seg.sizes[num] = (data.count(b"\n"), len(data))
        saved = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            saved = (seg.dir / "cursors.json").stat().st_mtime_ns
            stored = json.loads((seg.dir / "cursors.json").read_text())
            seg.cursors = {str(k): (float(v[0]), int(v[1])) for k, v in stored.items()}
        # Lines written after the cursors were last saved (a crash in between) are in the newest two.
        recovered: dict[str, Cursor] = {}
        for num in sorted(seg.sizes)[-2:]:
            if (seg.dir / f"{num:08d}.jsonl").stat().st_mtime_ns <= saved:
                continue
            for line in self._read(app, num, 0)[0]:
                if line.container:
                    recovered[line.container] = advance(recovered.get(line.container, (0.0, 0)), line.time)
        for cid, cur in recovered.items():
            if cur > seg.cursors.get(cid, (0.0, 0)):
                seg.cursors[cid] = cur
        return seg

    def cursor(self, app: str, container: str) -> Cursor:
        """Where the store is in one container's output: (0, 0) if it has nothing of it."""
        with self._disk:
            return self._segments(app).cursors.get(container, (0.0, 0))

    def forget(self, app: str) -> None:
        """Every line of `app` (it was destroyed)."""
        with self._lock:
            self._buffers.pop(app, None)
            self._forget_cursors.pop(app, None)
        with self._disk:
            self._apps.pop(app, None)
            shutil.rmtree(self.root / app, ignore_errors=True)

    def close(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(5)
        self.flush()

    # -- reading -------------------------------------------------------------------------------
    def end(self, app: str) -> Position:
        """Where the next line of `app` will be: read up to here, then follow from here."""
        with self._disk:
            seg = self._segments(app)
            num = seg.newest
            return (num, seg.sizes.get(num, (0, 0))[1])

    def _read(self, app: str, num: int, offset: int, upto: int | None = None) -> tuple[list[Line], int]:
        """Whole lines of one segment from `offset` (to `upto`); and the offset after them."""
        try:
            with open(self.root / app / f"{num:08d}.jsonl", "rb") as f:
                f.seek(offset)
                data = f.read() if upto is None else f.read(max(0, upto - offset))
        except FileNotFoundError:
            return [], offset
        whole = data[: data.rfind(b"\n") + 1]
        lines = [ln for ln in (Line.decode(raw) for raw in whole.splitlines()) if ln is not None]
        return lines, offset + len(whole)

    def read_from(self, app: str, pos: Position) -> tuple[list[Line], Position]:
        """Every line after `pos`, and the position after them (for following)."""
        num, offset = pos
        nums = [n for n in _segment_nums(self.root / app) if n >= num]
        found: list[Line] = []
        for n in nums:
            got, end = self._read(app, n, offset if n == num else 0)
            found += got
            num, offset = n, end
        return found, (num, offset)

    def lines(
        self,
        app: str,
        limit: int | None = None,
        keep: Callable[[Line], bool] | None = None,
        upto: Position | None = None,
    ) -> list[Line]:
        """The last `limit` lines (None: all) that `keep` accepts, before `upto`; oldest first."""
        found: list[Line] = []
        for chunk in self._backwards(app, upto):
            found = [ln for ln in chunk if keep is None or keep(ln)] + found
            if limit is not None and len(found) >= limit:
                return found[-limit:]
        return found

    def _backwards(self, app: str, upto: Position | None) -> Iterator[list[Line]]:
        for num in reversed(_segment_nums(self.root / app)):
            if upto is not None and num > upto[0]:
                continue
            yield self._read(app, num, 0, upto[1] if upto is not None and num == upto[0] else None)[0]

    def wait(self, timeout: float) -> None:
        """Until the writer's next flush (or `timeout`)."""
        with self._flushed:
            self._flushed.wait(timeout)

    def usage(self, app: str) -> tuple[int, int]:
        """(lines, bytes) kept of `app` on disk."""
        with self._disk:
            sizes = self._segments(app).sizes.values()
            return sum(n for n, _ in sizes), sum(b for _, b in sizes)
