"""The Procfile's `release:` phase: one attached one-off per new release, before the rollout.

It runs with the release's image and config (a migration, a cache warm-up); its output streams to
the deployer; a non-zero exit aborts the deploy, so the running release keeps serving.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from core.errors import DeployError
from scheduler.base import Backend, ProcessSpec, Stdio
from scheduler.rollout import Deployment, spec


def release_spec(d: Deployment) -> ProcessSpec | None:
    """The release phase's instance (pure), or None when the build declares no `release:`."""
    if not d.release_command:
        return None
    return spec(d, "release", 1)


def run(backend: Backend, d: Deployment, emit: Callable[[str], None], timeout: float | None = None) -> None:
    """Run the release command attached; DeployError if it exits non-zero, or if it still runs
    after `timeout` seconds (it is stopped then)."""
    one = release_spec(d)
    if one is None:
        return
    name = str(one.name)
    backend.stop(name, 0)  # one left by an interrupted attempt would hold the name
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        backend.stop(name, 0)

    timer = threading.Timer(timeout, expire) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        code = run_streamed(backend, one, emit)
    finally:
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        raise DeployError(
            f"the release command ran longer than {timeout:g}s and was stopped:"
            f" deploy of v{d.version} aborted"
        )
    if code != 0:
        raise DeployError(f"the release command failed (exit status {code}): deploy of v{d.version} aborted")


def run_streamed(backend: Backend, one: ProcessSpec, emit: Callable[[str], None]) -> int:
    """Run a one-off with its output relayed line by line (read here, so a hang-up raised by `emit`
    stops the instance at once); its exit status."""
    r, w = os.pipe()
    result: list[int] = []
    failure: list[BaseException] = []

    def attached() -> None:
        try:
            result.append(backend.run_attached(one, Stdio(stdin=None, stdout=w, stderr=w)))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)
        finally:
            os.close(w)  # the reader sees the end once the instance's own copies are gone too

    worker = threading.Thread(target=attached, name=f"one-off-{one.name}", daemon=True)
    worker.start()
    try:
        with os.fdopen(r, "rb") as lines:
            for raw in lines:
                emit(raw.decode("utf-8", "replace").rstrip("\n"))
    except BaseException:
        backend.stop(str(one.name), 0)
        worker.join()
        raise
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
