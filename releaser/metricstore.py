"""Request metrics per app, kept over time in bounded space: per-minute rollups, 7 days.

    STATE/metrics/APP/YYYYMMDD.jsonl   one JSON object a line: part of one minute of one process type
        {"m": minute (epoch s), "y": "web", "n": requests, "s": {"2": n, "5": n, ...},
         "b": bytes sent, "h": {"bucket": n}, "p": {"/path": n}, "t": seconds of latency summed}

Records are additive: a minute may be written in several parts (the collector flushes every few
seconds, and again after a restart) and reading sums them. Latencies go into log-scale buckets (each
12 % wider than the last, 0.1 ms to about 2 h), so percentiles over any span come from the summed
buckets, within 12 %. Paths are counted per record up to MAX_PATHS distinct ones, the rest as
`(other)`. A day's file older than KEEP_DAYS goes; nothing else is ever deleted but with the app.
No etcd: metrics are many and etcd is for state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEEP_DAYS = 7
MAX_PATHS = 50
OTHER_PATHS = "(other)"
_BASE = 1e-4  # seconds: the first bucket's upper bound
_GROWTH = 1.12
_BUCKETS = 200  # 1e-4 * 1.12**200 = about 7,000 s


def bucket(latency: float) -> int:
    if latency <= _BASE:
        return 0
    return min(_BUCKETS, math.ceil(math.log(latency / _BASE) / math.log(_GROWTH)))


def bucket_upper(index: int) -> float:
    """The latency (seconds) every request in bucket `index` is at most."""
    return float(_BASE * _GROWTH**index)


@dataclass
class Rollup:
    """Requests of one app's process type over some span: add them, sum them, read percentiles."""

    requests: int = 0
    status: Counter[str] = field(default_factory=Counter)  # "2" .. "5"
    bytes: int = 0
    latency: Counter[int] = field(default_factory=Counter)  # bucket -> requests
    paths: Counter[str] = field(default_factory=Counter)
    latency_sum: float = 0.0  # seconds, over the timed requests

    def add(self, status: int, latency: float | None, size: int, path: str) -> None:
        self.requests += 1
        self.status[str(status // 100)] += 1
        self.bytes += size
        if latency is not None:
            self.latency[bucket(latency)] += 1
            self.latency_sum += latency
        if path in self.paths or len(self.paths) < MAX_PATHS:
            self.paths[path] += 1
        else:
            self.paths[OTHER_PATHS] += 1

    def merge(self, other: Rollup) -> None:
        self.requests += other.requests
        self.status.update(other.status)
        self.bytes += other.bytes
        self.latency.update(other.latency)
        self.paths.update(other.paths)
        self.latency_sum += other.latency_sum

    def percentile(self, q: float) -> float | None:
        """Seconds: the upper bound of the bucket holding the q-th (0..1) timed request."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank, seen = max(1, math.ceil(q * total)), 0
        for index in sorted(self.latency):
            seen += self.latency[index]
            if seen >= rank:
                return bucket_upper(index)
        return bucket_upper(max(self.latency))

    def to_json(self, minute: int, ptype: str) -> dict[str, object]:
        return {
            "m": minute,
            "y": ptype,
            "n": self.requests,
            "s": dict(self.status),
            "b": self.bytes,
            "h": {str(k): v for k, v in self.latency.items()},
            "p": dict(self.paths),
            "t": round(self.latency_sum, 6),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rollup:
        r = cls()
        r.requests, r.bytes = int(d.get("n", 0)), int(d.get("b", 0))
        r.status = Counter({str(k): int(v) for k, v in (d.get("s") or {}).items()})
        r.latency = Counter({int(k): int(v) for k, v in (d.get("h") or {}).items()})
        r.paths = Counter({str(k): int(v) for k, v in (d.get("p") or {}).items()})
        r.latency_sum = float(d.get("t", 0.0))
        return r


def _day(minute: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(minute))


class MetricStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, app: str) -> Path:
        return self.root / app

    def write(self, app: str, parts: dict[tuple[int, str], Rollup]) -> None:
        """Append the rollups of (minute, type) to their days' files, one write per file."""
        by_day: dict[str, list[str]] = {}
        for (minute, ptype), rollup in sorted(parts.items()):
            if rollup.requests:
                by_day.setdefault(_day(minute), []).append(json.dumps(rollup.to_json(minute, ptype)) + "\n")
        if not by_day:
            return
        d = self._dir(app)
        d.mkdir(parents=True, exist_ok=True)
        for day, lines in by_day.items():
            fd = os.open(d / f"{day}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("".join(lines))

    def read(self, app: str, since: float, until: float | None = None) -> dict[str, dict[int, Rollup]]:
        """type -> minute -> the summed rollup, for minutes that ended after `since`."""
        until = until or time.time()
        first = int(since // 60) * 60
        found: dict[str, dict[int, Rollup]] = {}
        d = self._dir(app)
        if not d.is_dir():
            return found
        for path in sorted(d.glob("*.jsonl")):
            if path.stem < _day(first):
                continue
            with contextlib.suppress(OSError), path.open() as f:
                for line in f:
                    try:
                        raw = json.loads(line)
                        minute, ptype = int(raw["m"]), str(raw["y"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line (a crash mid-write)
                    if first <= minute <= until:
                        found.setdefault(ptype, {}).setdefault(minute, Rollup()).merge(Rollup.from_json(raw))
        return found

    def prune(self, now: float | None = None) -> None:
        oldest = _day(int((now or time.time()) - KEEP_DAYS * 86400))
        if not self.root.is_dir():
            return
        for path in self.root.glob("*/*.jsonl"):
            if path.stem < oldest:
                path.unlink(missing_ok=True)

    def remove(self, app: str) -> None:
        shutil.rmtree(self._dir(app), ignore_errors=True)
