"""Containers' CPU and memory from the engine's stats API (what `docker stats` shows), for the docker
backend's `usage`. One sample each: the engine takes two readings about a second apart and gives both,
so the containers are asked side by side and the whole answer takes about that second."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from scheduler.base import Instance, Usage

WORKERS = 16


def from_stats(stats: dict[str, Any]) -> Usage | None:
    """Usage from one stats answer (pure): the CPU share between its two readings, in cores, and
    memory less the inactive page cache (as `docker stats` counts it)."""
    try:
        cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
        total = cpu["cpu_usage"]["total_usage"] - pre.get("cpu_usage", {}).get("total_usage", 0)
        system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        cores = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
        mem = stats.get("memory_stats") or {}
        cache = (mem.get("stats") or {}).get("inactive_file", 0)
        limit = mem.get("limit")
    except (KeyError, TypeError):
        return None
    share = total / system * cores if system > 0 and total >= 0 else 0.0
    return Usage(
        cpu=round(share, 4), memory=max(0, int(mem.get("usage", 0)) - int(cache)), memory_limit=limit
    )


def usage(fetch: Callable[[str], dict[str, Any] | None], instances: list[Instance]) -> dict[str, Usage]:
    """`fetch(id)`: the engine's stats answer for one container, None if it has none."""
    running = [i for i in instances if i.running]

    def one(inst: Instance) -> tuple[str, Usage | None]:
        stats = fetch(inst.id)
        return inst.id, from_stats(stats) if stats else None

    if not running:
        return {}
    with concurrent.futures.ThreadPoolExecutor(min(WORKERS, len(running))) as pool:
        return {ref: u for ref, u in pool.map(one, running) if u is not None}
