"""argv builders for nginx: pure, they return lists and run nothing (tests compare them exactly)."""

from __future__ import annotations

import os
from typing import Final

NGINX_BIN: Final = "/usr/sbin/nginx"


def _prefix(prefix: str | os.PathLike[str]) -> str:
    p = os.fspath(prefix)
    return p if p.endswith("/") else p + "/"


def nginx_argv(
    conf_path: str | os.PathLike[str], prefix: str | os.PathLike[str], *, binary: str = NGINX_BIN
) -> list[str]:
    """Start nginx on `conf_path` with every relative path under `prefix`; it daemonizes itself."""
    return [binary, "-c", os.fspath(conf_path), "-p", _prefix(prefix)]


def nginx_foreground_argv(
    conf_path: str | os.PathLike[str], prefix: str | os.PathLike[str], *, binary: str = NGINX_BIN
) -> list[str]:
    """The same nginx in the foreground: what the router's container runs (the engine supervises it)."""
    return [*nginx_argv(conf_path, prefix, binary=binary), "-g", "daemon off;"]


def nginx_test_argv(
    conf_path: str | os.PathLike[str], prefix: str | os.PathLike[str], *, binary: str = NGINX_BIN
) -> list[str]:
    """Check `conf_path` (and everything it includes) without touching the running nginx.

    `-q` keeps stderr to warnings and errors, so any output worth reading is the reason."""
    return [binary, "-t", "-q", "-c", os.fspath(conf_path), "-p", _prefix(prefix)]
