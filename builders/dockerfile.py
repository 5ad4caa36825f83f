"""Dockerfile builds: the engine's build arguments and its output stream (pure; builders.engine runs them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from core.errors import BuildError


def build_kwargs(tag: str, platform: str = "") -> dict[str, Any]:
    """Arguments of the engine's build call: pure, so tests compare them exactly."""
    return {
        "tag": tag,
        # Marks what this platform built, so garbage collection prunes only its own dangling images.
        "labels": {"io.deis.platform": platform},
        "custom_context": True,
        "encoding": None,
        "rm": True,
        "forcerm": True,
        "pull": False,  # base images are local (no public registry is reachable); FROM resolves them
        "decode": True,
    }


def stream_lines(chunks: Iterable[dict[str, Any]], emit: Callable[[str], None]) -> None:
    """Relay the engine's build stream line by line; raise BuildError on its error message."""
    pending = ""
    for chunk in chunks:
        if "error" in chunk:
            if pending.strip():
                emit(pending.rstrip())
            raise BuildError(f"docker build failed: {str(chunk['error']).strip()}")
        text = chunk.get("stream")
        if not text:
            continue
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                emit(line.rstrip())
    if pending.strip():
        emit(pending.rstrip())
