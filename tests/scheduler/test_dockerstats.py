"""CPU and memory from one stats answer of the engine (pure)."""

from __future__ import annotations

from scheduler.base import Usage
from scheduler.dockerstats import from_stats


def test_cpu_in_cores_and_memory_without_the_page_cache() -> None:
    stats = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000},
            "system_cpu_usage": 20_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
        "memory_stats": {"usage": 50_000_000, "limit": 268_435_456, "stats": {"inactive_file": 10_000_000}},
    }
    assert from_stats(stats) == Usage(cpu=0.4, memory=40_000_000, memory_limit=268_435_456)


def test_a_first_sample_and_a_bad_answer() -> None:
    first = {
        "cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10, "online_cpus": 1},
        "precpu_stats": {},
        "memory_stats": {},
    }
    assert from_stats(first) == Usage(cpu=0.5, memory=0, memory_limit=None)
    assert from_stats({}) is None
