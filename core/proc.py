"""Processes on this host: liveness, command lines and children read from /proc (Linux), and the
few ways the platform runs a program of its own (logged to a file, stopped by PID).

Nothing here signals a process it was not given by PID: callers pass the PIDs they started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import ServiceError

PROC = Path("/proc")
POLL_INTERVAL = 0.1


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of `pid`, or None if there is no such process."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 2:
        return None
    return fields[0].decode(), int(fields[1])


def _threads(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a daemon's exited master may linger as one if PID 1
    does not reap it; a zombie child of ours is reaped here). A multi-threaded process whose main
    thread has exited shows as a zombie while its other threads finish: it still holds its files
    (a listening socket), so it is alive until they are gone."""
    st = _stat(pid)
    if st is None or st[0] == "X":
        return False
    if st[0] == "Z":
        if _threads(pid) > 1:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def cmdline(pid: int) -> str:
    """The command line (or the title the process set for itself, as nginx does), or ''."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def children(pid: int) -> set[int]:
    """Live child processes of `pid`: from /proc/PID/task/*/children where the kernel has it
    (CONFIG_PROC_CHILDREN), else by scanning every process's parent."""
    kids: set[int] = set()
    found = False
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return kids
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found = True
        kids.update(int(p) for p in text.split())
    if not found:
        for entry in os.listdir(PROC):
            if entry.isdigit():
                st = _stat(int(entry))
                if st is not None and st[1] == pid:
                    kids.add(int(entry))
    return {k for k in kids if alive(k)}


def terminate(pid: int, grace: float, name: str) -> None:
    """SIGTERM ``pid`` alone, wait up to ``grace``, then SIGKILL and wait a little more."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(POLL_INTERVAL)
    if alive(pid):
        raise ServiceError(f"{name} (pid {pid}) did not exit after SIGKILL")


def runs(pid: int, program: str) -> bool:
    """Whether process ``pid`` was started as ``program`` (guards against a reused PID)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return argv0 == program or os.path.basename(argv0) == os.path.basename(program)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing), across processes: `deis up` and a test run may race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def last_line(path: Path, limit: int = 300) -> str:
    """The last non-blank line the latest command wrote to ``path`` (after our last ``==>`` header)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "no log"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    headers = [i for i, ln in enumerate(lines) if ln.startswith("==> ")]
    if headers:
        lines = lines[headers[-1] + 1 :]
    if not lines:
        return "no output"
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_logged(
    argv: list[str], log: Path, what: str, package: str, env: dict[str, str] | None = None
) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            code = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            ).returncode
        except FileNotFoundError as exc:
            raise ServiceError(f"{what}: {argv[0]} not found (install the {package} package)") from exc
    if code != 0:
        raise ServiceError(f"{what} failed with status {code}: {last_line(log)} (see {log})")
