"""Per-minute rollups: additive parts, percentiles within a bucket, bounded paths, 7 days kept."""

from __future__ import annotations

import json
from pathlib import Path

from releaser import metricstore
from releaser.metricstore import MetricStore, Rollup

MINUTE = 1_700_000_040  # a whole minute


def test_percentiles_land_in_the_right_bucket() -> None:
    r = Rollup()
    for _ in range(90):
        r.add(200, 0.002, 100, "/fast")
    for _ in range(10):
        r.add(500, 0.300, 50, "/slow")
    r.add(503, None, 10, "/")  # a router page: counted, not timed
    assert r.requests == 101 and r.status == {"2": 90, "5": 11} and r.bytes == 90 * 100 + 10 * 50 + 10
    p50, p95, p99 = r.percentile(0.5), r.percentile(0.95), r.percentile(0.99)
    assert p50 is not None and 0.002 <= p50 <= 0.002 * 1.12
    assert p95 is not None and 0.300 <= p95 <= 0.300 * 1.12
    assert p99 is not None and 0.300 <= p99 <= 0.300 * 1.12
    assert Rollup().percentile(0.5) is None
    assert abs(r.latency_sum - (90 * 0.002 + 10 * 0.3)) < 1e-9


def test_paths_are_bounded() -> None:
    r = Rollup()
    for k in range(metricstore.MAX_PATHS + 20):
        r.add(200, 0.001, 1, f"/p{k}")
    r.add(200, 0.001, 1, "/p0")
    assert len(r.paths) == metricstore.MAX_PATHS + 1 and r.paths[metricstore.OTHER_PATHS] == 20
    assert r.paths["/p0"] == 2


def test_parts_of_a_minute_add_up_and_survive_a_torn_line(tmp_path: Path) -> None:
    store = MetricStore(tmp_path)
    a, b = Rollup(), Rollup()
    a.add(200, 0.01, 10, "/")
    b.add(404, 0.02, 20, "/x")
    store.write("app", {(MINUTE, "web"): a})
    store.write("app", {(MINUTE, "web"): b, (MINUTE + 60, "(router)"): b})
    (day,) = (tmp_path / "app").glob("*.jsonl")
    with day.open("a") as f:
        f.write('{"m": 17000')  # a crash mid-write
    got = store.read("app", since=MINUTE - 1, until=MINUTE + 120)
    assert got["web"][MINUTE].requests == 2 and got["web"][MINUTE].status == {"2": 1, "4": 1}
    assert got["(router)"][MINUTE + 60].bytes == 20
    assert store.read("app", since=MINUTE + 60, until=MINUTE + 120).keys() == {"(router)"}
    assert store.read("other", since=0) == {}
    store.remove("app")
    assert not (tmp_path / "app").exists()


def test_old_days_are_pruned(tmp_path: Path) -> None:
    store = MetricStore(tmp_path)
    r = Rollup()
    r.add(200, 0.01, 1, "/")
    old, new = MINUTE - 8 * 86400, MINUTE
    store.write("app", {(old, "web"): r, (new, "web"): r})
    assert len(list((tmp_path / "app").glob("*.jsonl"))) == 2
    store.prune(now=MINUTE)
    (left,) = (tmp_path / "app").glob("*.jsonl")
    assert json.loads(left.read_text().splitlines()[0])["m"] == new
