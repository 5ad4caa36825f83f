"""metrics [--since AGE] [--json] [--prometheus]: an app's requests and containers (appliance.metricsview).

Requests come from the router's own per-app access log, rolled up per minute and kept 7 days
(releaser.metricstore), so `--since` works across restarts; CPU and memory are the engine's now.
"""

from __future__ import annotations

import argparse
import time

from appliance import metricsview
from core.errors import ValidationError
from gitserver.commands.base import Context, command
from gitserver.commands.logs import duration
from releaser import apps
from releaser.metricstore import KEEP_DAYS


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since", type=duration, default=3600.0, metavar="AGE", help="the span: 15m, 1h (default), 2d"
    )
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="Prometheus' text format, for every app you may see unless --app names one",
    )


def _ms(v: object) -> str:
    return "-" if v is None else f"{v:.1f}"


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _row(name: str, f: dict[str, object]) -> list[str]:
    status = f["status"]
    assert isinstance(status, dict)
    return [
        name,
        str(f["requests"]),
        f"{f['rps']:.2f}",
        *(str(status[c]) for c in ("2xx", "3xx", "4xx", "5xx")),
        _ms(f["p50_ms"]),
        _ms(f["p95_ms"]),
        _ms(f["p99_ms"]),
        _size(f["bytes"]),
    ]


@command(
    "metrics",
    "an app's requests (count, rate, status classes, latency percentiles, bytes, top paths) and its"
    " containers' CPU and memory",
    app=True,
    args=_args,
    examples=["ssh deis metrics --app myapp --since 15m", "ssh deis metrics --prometheus"],
)
def metrics(ctx: Context, args: argparse.Namespace) -> int:
    if args.since > KEEP_DAYS * 86400:
        raise ValidationError(f"metrics are kept {KEEP_DAYS} days: use --since {KEEP_DAYS}d or less")
    if args.prometheus:
        names = [ctx.app(args).name] if args.app else [a.name for a in apps.apps_for(ctx.store, ctx.user)]
        ctx.stdout.write(metricsview.prometheus(ctx.platform, names))
        return 0
    app = ctx.app(args)
    now = time.time()
    data = metricsview.report(ctx.platform, app.name, now - args.since, now)
    if ctx.json:
        ctx.show(data, [], [])
        return 0
    headers = ["TYPE", "REQUESTS", "REQ/S", "2XX", "3XX", "4XX", "5XX", "P50 MS", "P95 MS", "P99 MS", "BYTES"]
    rows = [_row(t, f) for t, f in data["types"].items()] + [_row("all", data)]
    ctx.show(data, headers, rows, title=f"{app.name} requests, last {int(args.since)} s")
    ctx.show(
        data,
        ["CONTAINER", "RELEASE", "CPU", "MEMORY", "LIMIT"],
        [
            [c["name"], c["release"], "-" if c["cpu"] is None else f"{c['cpu'] * 100:.1f}%",
             _size(c["memory"]), _size(c["memory_limit"])]
            for c in data["containers"]
        ],
        title=f"{app.name} containers",
    )  # fmt: skip
    ctx.show(
        data,
        ["PATH", "REQUESTS"],
        [[p["path"], str(p["requests"])] for p in data["top_paths"]],
        title=f"{app.name} top paths",
    )
    return 0
