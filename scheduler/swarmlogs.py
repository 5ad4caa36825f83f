"""A swarm service's output, for the swarm backend's `logs` and `stop`.

Two ways of the swarm shape this: a follow stream of a service's logs never ends by itself (not when
its task stops, not when the service is removed), and a service scaled to zero has its tasks, and
their output, removed with them. So `stop` records the service's last lines while it stops
(`Capture`), its follow streams (`Follow`) end once it has, after the lines they had not delivered
yet, and a reader asking after that is served from the record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from scheduler.base import LogLine
from scheduler.docker import DockerLogStream

log = logging.getLogger("deis.scheduler")

KEPT_LINES = 5000  # of a stopping service's output, recorded for who reads it after it stopped


class Raw(Protocol):
    """The engine's log response: chunks of bytes; `close()` from another thread ends it."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


Opener = Callable[..., Raw]  # (**params) -> the service's log response


def params(*, tail: int | None, follow: bool, since: float | None) -> dict[str, Any]:
    """The log API's query for the Backend.logs arguments (the API's `since` is whole seconds)."""
    return {
        "follow": follow,
        "stdout": True,
        "stderr": True,
        "timestamps": True,
        "tail": "all" if tail is None else str(tail),
        "since": int(since) if since and since > 0 else 0,
    }


def selected(lines: list[LogLine], *, tail: int | None, since: float | None) -> list[LogLine]:
    """`lines` as Backend.logs would give them (pure)."""
    kept = [ln for ln in lines if not since or ln.time >= since]
    return kept[-tail:] if tail else ([] if tail == 0 else kept)


def after(lines: list[LogLine], seen: LogLine | None, since: float | None) -> list[LogLine]:
    """The lines of `lines` that come after `seen` (the last one a stream delivered), pure."""
    if seen is None:
        return selected(lines, tail=None, since=since)
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] == seen:
            return lines[index + 1 :]
    return [ln for ln in lines if ln.time > seen.time]


class Recorded:
    """A stopped service's recorded lines as a LogStream."""

    def __init__(self, lines: list[LogLine]) -> None:
        self._lines = lines

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self._lines)

    def close(self) -> None:
        pass


class Follow:
    """A follow stream of a service's output; `end(record)` (the service stopped) ends it after
    the record's lines it had not delivered yet."""

    def __init__(self, raw: Raw, since: float | None) -> None:
        self._raw, self._since = raw, since
        self._rest: list[LogLine] | None = None
        self._seen: LogLine | None = None
        self.closed = False

    def __iter__(self) -> Iterator[LogLine]:
        for line in DockerLogStream(self._raw):
            if self._since and line.time < self._since:
                continue
            self._seen = line
            yield line
        if self._rest is not None:
            yield from after(self._rest, self._seen, self._since)

    def end(self, record: list[LogLine]) -> None:
        self._rest = record
        self.close()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):  # closing an already broken socket
            self._raw.close()


class Capture:
    """A stopping service's output, recorded from its last KEPT_LINES on until `finish()`."""

    def __init__(self, open_logs: Opener, service: str) -> None:
        self._chunks: list[bytes] = []
        self._raw: Raw | None = None
        with contextlib.suppress(Exception):  # a service already gone has nothing to record
            self._raw = open_logs(**params(tail=KEPT_LINES, follow=True, since=None))
        self._thread = threading.Thread(target=self._read, name=f"capture-{service[:12]}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        if self._raw is not None:
            with contextlib.suppress(Exception):  # ended by finish()
                for chunk in self._raw:
                    self._chunks.append(chunk)

    def finish(self) -> list[LogLine]:
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
        self._thread.join(5)
        return list(DockerLogStream(list(self._chunks)))


class Copier:
    """One stream of a one-off's output to `fd` as it comes, exactly as written (no times, no added
    newline). A finished task's follow stream does not end by itself: `finish` closes it and then
    writes whatever the complete log has beyond what was copied."""

    def __init__(self, open_logs: Opener, fd: int) -> None:
        self.open_logs, self.fd = open_logs, fd
        self.copied = 0
        self._stream: Raw | None = None
        self._thread = threading.Thread(target=self._follow, name="copy-one-off", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # closed by finish(), or the service went away
            self._stream = self.open_logs(follow=True)
            for chunk in self._stream:
                self._write(chunk)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.copied += len(data)

    def finish(self) -> None:
        time.sleep(0.2)  # lines in flight on the follow stream arrive first
        self.close()
        try:
            rest = b"".join(self.open_logs(follow=False))
        except Exception as exc:  # the engine's error, whatever its kind: the status still counts
            log.warning("could not read the rest of a one-off's output: %s", exc)
            return
        with contextlib.suppress(OSError):  # the caller closed its end
            self._write(rest[self.copied :])

    def close(self) -> None:
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self._thread.join(5)
