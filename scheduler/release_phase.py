"""The Procfile's `release:` phase: one attached container per new release, before the rollout.

It runs with the release's image and config (a migration, a cache warm-up); its output streams to
the deployer; a non-zero exit aborts the deploy, so the running release keeps serving.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from appliance.errors import DeployError, ServiceError
from scheduler.base import Backend, ContainerSpec
from scheduler.rollout import Deployment, spec


def release_spec(d: Deployment) -> ContainerSpec | None:
    """The release phase's container (pure), or None when the build declares no `release:`."""
    if not d.release_command:
        return None
    return spec(d, "release", 1)


def run(backend: Backend, d: Deployment, emit: Callable[[str], None]) -> None:
    """Run the release command attached; DeployError if it exits non-zero."""
    spec = release_spec(d)
    if spec is None:
        return
    name = str(spec.name)
    backend.stop(name, 0)  # one left by an interrupted attempt would hold the name
    argv = backend.run_argv(spec)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        raise ServiceError(f"cannot run the release command: {exc}") from exc
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            emit(raw.decode("utf-8", "replace").rstrip("\n"))
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        backend.stop(name, 0)
        raise
    if code != 0:
        raise DeployError(f"the release command failed (exit status {code}): deploy of v{d.version} aborted")
