"""Reading processes from /proc (Linux): liveness, command line, children. No signals are sent here."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


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


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a daemon's exited master may linger as one if PID 1
    does not reap it)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


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
