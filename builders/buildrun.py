"""Running one build container attached (the slugbuilder, a buildpack clone): its output relayed line
by line as it comes, each line cut at LINE_LIMIT bytes (a build that prints gigabytes without a line
break must not grow the appliance), the container removed when the build takes longer than its time
limit or when the caller is interrupted (the pusher hung up)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from core import dockercli
from core.errors import BuildError, ServiceError

LINE_LIMIT = 8192


def remove(container: str) -> None:
    subprocess.run(
        dockercli.remove_force(container), capture_output=True, stdin=subprocess.DEVNULL, check=False
    )


def run_streamed(argv: list[str], emit: Callable[[str], None], container: str, timeout: float) -> int:
    """Run `argv` (a `docker run` of `container`), relaying its output; its exit status. After
    `timeout` seconds the container is removed and BuildError says so."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except FileNotFoundError as exc:
        raise ServiceError("docker not found (install the docker.io package)") from exc
    assert proc.stdout is not None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        remove(container)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        while raw := proc.stdout.readline(LINE_LIMIT):
            emit(raw.decode("utf-8", "replace").rstrip("\n"))
        code = proc.wait()
    except BaseException:
        remove(container)
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise BuildError(f"the build took longer than {timeout:.0f}s (build_timeout) and was stopped")
    return code
