"""The router's per-app access log, written for the metrics (appliance.metrics reads it).

    logs/APP.access.log    one line a request, tab-separated (nginx's log_format `deis_metrics`):
                           msec  status  request_time  upstream_response_time  bytes_sent
                           upstream_addr  method  uri

nginx escapes `"`, `\\` and every byte below 0x20 or above 0x7e in a variable as \\xHH, so a path
never holds the tab or newline that would split a line; a line that does not parse is skipped.
nginx writes it through a 64 KiB buffer flushed at least every second, which costs the router less
than the unbuffered line per request it wrote before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FORMAT_NAME: Final = "deis_metrics"
FIELDS: Final = (
    "$msec",
    "$status",
    "$request_time",
    "$upstream_response_time",
    "$bytes_sent",
    "$upstream_addr",
    "$request_method",
    "$uri",
)
FORMAT: Final = "\\t".join(FIELDS)  # nginx's own escape for a tab, inside the quoted format
BUFFER: Final = "buffer=64k flush=1s"


def log_file(app: str) -> str:
    """The app's access log, relative to the router's directory."""
    return f"logs/{app}.access.log"


@dataclass(frozen=True)
class Hit:
    time: float  # seconds since the epoch, when the request ended
    status: int
    latency: float | None  # seconds the upstream took; None: no upstream answered (a router page)
    bytes: int
    upstream: str  # the endpoint that answered last, "" if none
    method: str
    path: str


def _upstream_time(field: str) -> float | None:
    """`0.004`, `0.002, 0.003` (tries one after another: their sum), `-` (none)."""
    total, seen = 0.0, False
    for raw in field.replace(":", ",").split(","):
        part = raw.strip()
        if part and part != "-":
            total += float(part)
            seen = True
    return total if seen else None


def parse(line: str) -> Hit | None:
    parts = line.rstrip("\n").split("\t")
    if len(parts) != len(FIELDS):
        return None
    try:
        # `ADDR`, `ADDR, ADDR` (tries), `ADDR : ADDR` (an internal redirect), `-`
        last = parts[5].replace(" : ", ",").split(",")[-1].strip()
        return Hit(
            time=float(parts[0]),
            status=int(parts[1]),
            latency=_upstream_time(parts[3]),
            bytes=int(parts[4]),
            upstream="" if last == "-" else last,
            method=parts[6],
            path=parts[7],
        )
    except ValueError:
        return None
