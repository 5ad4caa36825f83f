"""The README's promises about `./platform up` that hold on the host afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="`./platform up` links the CLI only when run as root")
def test_deis_is_on_path_after_platform_up() -> None:
    """The first deploy runs `deis keys:add ...` on the host: `deis` must be on root's PATH."""
    found = shutil.which("deis", path="/usr/local/bin:/usr/bin:/bin")
    assert found, "no deis on PATH: ./platform up links /usr/local/bin/deis to .venv/bin/deis"
    r = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and "keys:add" in r.stdout, r.stderr
