"""Fixture helpers for buildpack builds, shared by tests/e2e/test_buildpacks.py and benchmarks/."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from tests.harness import ROOT, Harness

PACKAGES = ROOT / "tests" / "fixtures" / "packages"


def make_wheel(name: str, version: str, dest: Path) -> Path:
    """A pure-python wheel of tests/fixtures/packages/NAME, made with zipfile (no build tools needed)."""
    src = PACKAGES / name / name
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/{p.relative_to(src)}": p.read_bytes() for p in sorted(src.rglob("*.py"))}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: deis-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel


def python_dep_checkout(h: Harness, app: str) -> Path:
    """The Python app with a dependency that it vendors as a wheel in vendor/."""
    work = h.checkout("bp-python-dep", app)
    make_wheel("greeting", "1.0", work / "vendor")
    h.git(work, "add", "-A")
    h.git(work, "commit", "-q", "-m", "vendor the greeting wheel")
    return work


def commit_files(h: Harness, work: Path, files: dict[str, str], message: str = "change") -> None:
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    h.git(work, "add", "-A")
    h.git(work, "commit", "-q", "-m", message)
