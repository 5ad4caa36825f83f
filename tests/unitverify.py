"""`systemd-analyze verify` on unit text: what systemd itself checks (quoting, escapes, keys, binaries)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def verify(tmp: Path, name: str, text: str) -> None:
    """Fails the test unless systemd accepts the unit with no complaint at all (warnings included)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    path = tmp / name
    path.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It exits 0 after some warnings (unknown escapes, unknown keys): any line naming the file is one.
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if name in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
