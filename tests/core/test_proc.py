"""core.proc.alive on real processes: a process whose main thread has exited still holds its files."""

from __future__ import annotations

import subprocess
import sys
import time

from core import proc

# The main thread ends with pthread_exit while another thread runs on: the leader shows as a zombie.
CHILD = """
import ctypes, socket, threading, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
threading.Thread(target=time.sleep, args=(1.5,)).start()
print(s.getsockname()[1], flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_zombie_leader_with_live_threads_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    deadline = time.monotonic() + 5
    while proc._stat(child.pid) is not None and proc._stat(child.pid)[0] != "Z":  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.alive(child.pid)  # the leader is a zombie, its listening socket still open
    ss = ["ss", "-ltnH", f"sport = :{port}"]
    listening = subprocess.run(ss, check=True, capture_output=True, text=True).stdout
    assert listening.strip()
    while proc.alive(child.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child.wait(timeout=5)
