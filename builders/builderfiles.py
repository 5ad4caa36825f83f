"""The slugbuilder's driver and fetcher and the built-in buildpacks, as the engine sees them.

An appliance in a container has them inside its image, where the host's engine cannot mount them:
`publish_files` copies them under the state dir (a host volume) once, and `engine_path` names the copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path

from core.settings import Settings

HERE = Path(__file__).resolve().parent
DRIVER_DIR = HERE / "slugbuilder"
BUILTIN_DIR = HERE / "buildpacks"

# Where the engine finds the driver and the built-in buildpacks: beside this file on the host; when
# the appliance runs in a container (its code is in its image, which the engine cannot mount from),
# the copy `publish_files` made under the state dir.
_published: Path | None = None


def publish_files(settings: Settings) -> Path:
    """Copy the driver and the built-in buildpacks under STATE/builder-files/DIGEST (once per content:
    an appliance handing over to another never changes the files the other's builds mount)."""
    global _published
    files = sorted(p for d in (DRIVER_DIR, BUILTIN_DIR) for p in d.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(HERE)}\0{path.stat().st_mode & 0o111}\0".encode() + path.read_bytes())
    dest = settings.state_dir / "builder-files" / h.hexdigest()[:16]
    if not dest.is_dir():
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
        for path in files:
            target = tmp / path.relative_to(HERE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        tmp.chmod(0o755)
        with contextlib.suppress(OSError):  # made meanwhile by another appliance: theirs is the same
            tmp.rename(dest)
        shutil.rmtree(tmp, ignore_errors=True)
    _published = dest
    return dest


def engine_path(path: Path) -> Path:
    """`path` (the driver or a built-in buildpack) as the engine sees it."""
    if _published is not None and path.is_relative_to(HERE):
        return _published / path.relative_to(HERE)
    return path
