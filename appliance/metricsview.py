"""What `metrics` shows: an app's rolled-up requests (releaser.metricstore) over a span, per process
type and in all, with its containers' CPU and memory from the backend; and the same in Prometheus'
text format (counters over everything kept, so a scrape sees a reset only when a day's file goes).

Latency percentiles are of the upstream's time (what the app took, as the router measured it);
requests no container answered count but have no latency.
"""

from __future__ import annotations

import time
from typing import Any

from appliance.platform import Platform
from releaser.metricstore import KEEP_DAYS, MetricStore, Rollup, bucket_upper
from scheduler.base import Instance

TOP_PATHS = 10
STATUS_CLASSES = ("1", "2", "3", "4", "5")
PROM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def figures(r: Rollup, seconds: float) -> dict[str, Any]:
    return {
        "requests": r.requests,
        "rps": round(r.requests / seconds, 3) if seconds > 0 else 0.0,
        "status": {f"{c}xx": r.status.get(c, 0) for c in STATUS_CLASSES},
        "p50_ms": _ms(r.percentile(0.50)),
        "p95_ms": _ms(r.percentile(0.95)),
        "p99_ms": _ms(r.percentile(0.99)),
        "bytes": r.bytes,
        "top_paths": [{"path": p, "requests": n} for p, n in r.paths.most_common(TOP_PATHS)],
    }


def containers(p: Platform, app: str) -> list[dict[str, Any]]:
    found: list[Instance] = [i for i in p.backend.instances(app) if i.running]
    used = p.backend.usage(found)
    rows = []
    for inst in found:
        u = used.get(inst.id)
        rows.append(
            {
                "name": f"{inst.name.type}.{inst.name.num}",
                "type": inst.name.type,
                "release": f"v{inst.name.version}",
                "cpu": u.cpu if u else None,
                "memory": u.memory if u else None,
                "memory_limit": u.memory_limit if u else None,
            }
        )
    return rows


def report(p: Platform, app: str, since: float, now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    seconds = max(1.0, now - since)
    by_type = MetricStore(p.settings.metrics_dir).read(app, since, now)
    total = Rollup()
    types = {}
    for ptype, minutes in sorted(by_type.items()):
        r = Rollup()
        for part in minutes.values():
            r.merge(part)
        total.merge(r)
        types[ptype] = figures(r, seconds)
    return {
        "app": app,
        "since": since,
        "until": now,
        **figures(total, seconds),
        "types": types,
        "containers": containers(p, app),
    }


def _labels(**kw: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kw.items()) + "}"


def prometheus(p: Platform, apps: list[str], now: float | None = None) -> str:
    """Counters over all that is kept, a latency histogram, and container gauges, for `apps`."""
    now = now or time.time()
    store = MetricStore(p.settings.metrics_dir)
    out = [
        "# HELP deis_requests_total Requests the router served, by app, process type and status class.",
        "# TYPE deis_requests_total counter",
    ]
    hist: list[str] = []
    sent: list[str] = []
    for app in apps:
        for ptype, minutes in sorted(store.read(app, now - KEEP_DAYS * 86400, now).items()):
            r = Rollup()
            for part in minutes.values():
                r.merge(part)
            for c in STATUS_CLASSES:
                if r.status.get(c):
                    out.append(
                        f"deis_requests_total{_labels(app=app, type=ptype, status=c + 'xx')} {r.status[c]}"
                    )
            sent.append(f"deis_response_bytes_total{_labels(app=app, type=ptype)} {r.bytes}")
            timed = sum(r.latency.values())
            for le in PROM_BUCKETS:
                n = sum(v for k, v in r.latency.items() if bucket_upper(k) <= le)
                hist.append(
                    f"deis_request_duration_seconds_bucket{_labels(app=app, type=ptype, le=str(le))} {n}"
                )
            hist.append(
                f"deis_request_duration_seconds_bucket{_labels(app=app, type=ptype, le='+Inf')} {timed}"
            )
            hist.append(
                f"deis_request_duration_seconds_sum{_labels(app=app, type=ptype)} {r.latency_sum:.6f}"
            )
            hist.append(f"deis_request_duration_seconds_count{_labels(app=app, type=ptype)} {timed}")
    out += [
        "# HELP deis_response_bytes_total Bytes the router sent.",
        "# TYPE deis_response_bytes_total counter",
    ]
    out += sent
    out += [
        "# HELP deis_request_duration_seconds Upstream response time (bucket bounds within 12 %).",
        "# TYPE deis_request_duration_seconds histogram",
        *hist,
        "# HELP deis_container_cpu_cores CPU a container uses now, in cores.",
        "# TYPE deis_container_cpu_cores gauge",
    ]
    mem = [
        "# HELP deis_container_memory_bytes Memory a container uses now.",
        "# TYPE deis_container_memory_bytes gauge",
    ]
    for app in apps:
        for row in containers(p, app):
            labels = _labels(app=app, type=row["type"], container=row["name"], release=row["release"])
            if row["cpu"] is not None:
                out.append(f"deis_container_cpu_cores{labels} {row['cpu']}")
                mem.append(f"deis_container_memory_bytes{labels} {row['memory']}")
    return "\n".join(out + mem) + "\n"
