"""Delayed ACKs off on the host's route to the app network.

The router keeps pooled (kept-alive) connections to each app container, through docker-proxy. An app
that writes a response's head and body in two small writes with Nagle's algorithm on (Python's
`http.server` with HTTP/1.1, many others) sends the body only once the head is ACKed, and on a pooled
connection the host side delays that ACK by up to 40 ms (Linux's delayed ACK; a fresh connection is
spared by its quick-ACK start). Measured: 44 ms p50 through the router against 0.6 ms direct. Giving
the route to the app network the `quickack` metric makes the host side ACK at once on every connection
to it (0.3 ms p50), and the pooled connections keep their throughput, which dropping keep-alive
(0.4 ms, but ~2.5x fewer requests/s through the router) would not. Only the app network's route
changes, nothing else on the host: docker makes that route with the bridge (again after an engine
restart), so `ensure` runs before every routed container starts and changes only what lacks it.
"""

from __future__ import annotations

import json
import logging
import subprocess
from typing import Any

log = logging.getLogger("deis.scheduler")

IP = "ip"


def show_argv(dev: str) -> list[str]:
    return [IP, "-json", "route", "show", "dev", dev, "proto", "kernel"]


def change_argv(route: dict[str, Any], dev: str) -> list[str]:
    """The same kernel route with `quickack 1` (pure: tests compare it exactly)."""
    argv = [IP, "route", "change", str(route["dst"]), "dev", dev, "proto", "kernel"]
    if route.get("scope"):
        argv += ["scope", str(route["scope"])]
    if route.get("prefsrc"):
        argv += ["src", str(route["prefsrc"])]
    return [*argv, "quickack", "1"]


def lacking(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routes (of `ip -json route show`) whose ACKs are still delayed."""
    return [
        r
        for r in routes
        if not any(m.get("quickack") == 1 for m in r.get("metrics", []) if isinstance(m, dict))
    ]


def ensure(dev: str) -> bool:
    """Whether every kernel route of bridge `dev` ACKs at once now. A failure (no `ip`, not root)
    costs latency, not correctness: it is logged and the container starts anyway."""
    try:
        shown = subprocess.run(show_argv(dev), capture_output=True, text=True, timeout=10, check=True)
        for route in lacking(json.loads(shown.stdout or "[]")):
            subprocess.run(change_argv(route, dev), capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        err = getattr(exc, "stderr", "") or exc
        log.warning("could not turn delayed ACKs off on the route to %s: %s", dev, str(err).strip())
        return False
    return True
