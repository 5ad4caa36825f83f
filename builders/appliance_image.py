"""The appliance's image: the appliance-base image (builders.components) plus this checkout's code and
the Python distributions it runs on, as one layer made with the engine's builder.

The tag is the digest of what goes in (`deis/appliance:DIGEST`): a checkout with other code makes
another image, so `deis up` from a newer checkout sees its appliance container is stale and
replaces it, and several checkouts on one engine (the tests' worktrees) never move each other's tag.
Nothing is pulled: the base is local, the distributions are copied from the running interpreter's
environment (the platform's .venv; same CPython minor version as Debian's python3, so compiled
wheels load in the image).

    context_files   what the layer holds: (path in the image, path on the host), pure given a tree
    digest          of those files' paths, modes and bytes, and of the Dockerfile
    ensure          the image for this checkout, made when missing; returns its tag
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import re
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

from builders import engine
from builders.components import APPLIANCE_BASE_IMAGE
from core.errors import ServiceError
from core.output import Output

REPO = "deis/appliance"
DIGEST_LABEL = "io.deis.appliance-digest"
PROJECT = "deis-appliance"
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "addons",
    "appliance",
    "builders",
    "core",
    "gitserver",
    "hooks",
    "releaser",
    "routerconf",
    "scheduler",
)
SRC = "/opt/deis/src"
SITE = "/opt/deis/site-packages"


# The engine mounts /proc/sys read-only in a container that is not `privileged`; the appliance sets
# sysctls of each build's link and forwarding (host network: they are the host's).
ENTRYPOINT = """#!/bin/sh
mount -o remount,bind,rw /proc/sys || exit 1
exec python3 -m gitserver.admin "$@"
"""


def dockerfile(digest: str) -> str:
    return (
        f"FROM {APPLIANCE_BASE_IMAGE}\n"
        f"COPY site-packages {SITE}\n"
        f"COPY src {SRC}\n"
        "COPY entrypoint /opt/deis/entrypoint\n"
        # Compiled once here: every start (a restart after a kill is timed) and every git hook
        # would otherwise compile asyncssh, cryptography and the platform again.
        f"RUN python3 -m compileall -q -j 0 {SITE} {SRC} >/dev/null\n"
        f"ENV PYTHONPATH={SRC}:{SITE} PYTHONUNBUFFERED=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"WORKDIR {SRC}\n"
        'ENTRYPOINT ["/opt/deis/entrypoint"]\n'
        f"LABEL {DIGEST_LABEL}={digest}\n"
    )


def _skip(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def code_files(root: Path = ROOT) -> list[tuple[str, Path]]:
    """The platform's packages (code, templates, buildpacks, the runner's scripts) under src/."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and not _skip(path):
                found.append((f"src/{path.relative_to(root)}", path))
    return found


def _requirement_name(req: str) -> str | None:
    """The distribution a requirement line names, or None when only an extra asks for it."""
    if re.search(r"extra\s*==", req):
        return None
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else None


def runtime_dists(project: str = PROJECT) -> list[importlib.metadata.Distribution]:
    """The project's runtime dependencies, recursively, as installed here (the test tools are not)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name for req in importlib.metadata.requires(project) or [] if (name := _requirement_name(req))]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker for another platform or Python asked for it
        seen[key] = dist
        todo += [n for req in dist.requires or [] if (n := _requirement_name(req))]
    return [seen[k] for k in sorted(seen)]


def dist_files(dists: list[importlib.metadata.Distribution]) -> list[tuple[str, Path]]:
    """Each distribution's installed files that lie in site-packages (not its scripts in bin/)."""
    found = []
    for dist in dists:
        for rel in dist.files or []:
            if ".." in rel.parts or _skip(Path(str(rel))):
                continue
            path = Path(str(dist.locate_file(rel)))
            if path.is_file():
                found.append((f"site-packages/{rel.as_posix()}", path))
    return sorted(set(found))


def digest(files: list[tuple[str, Path]], base_id: str = "") -> str:
    """Of the files, the Dockerfile and the base image's id (a remade base makes another image)."""
    h = hashlib.sha256(dockerfile("").encode() + ENTRYPOINT.encode() + base_id.encode())
    for name, path in files:
        h.update(json.dumps([name, path.stat().st_mode & 0o111 != 0]).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def current_files() -> list[tuple[str, Path]]:
    return code_files() + dist_files(runtime_dists())


def tag(files: list[tuple[str, Path]] | None = None) -> str:
    """This checkout's appliance image name."""
    base = engine.local_image_id(APPLIANCE_BASE_IMAGE) or ""
    return f"{REPO}:{digest(current_files() if files is None else files, base)}"


def _write_context(fh: IO[bytes], files: list[tuple[str, Path]], text: str) -> None:
    with tarfile.open(fileobj=fh, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
        data = ENTRYPOINT.encode()
        info = tarfile.TarInfo("entrypoint")
        info.size, info.mtime, info.mode = len(data), 0, 0o755
        tar.addfile(info, io.BytesIO(data))
        for name, path in files:
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0  # the engine's layer cache compares contents, not times
            with open(path, "rb") as src:
                tar.addfile(info, src)
    fh.seek(0)


# An unused appliance image older than this is removed by `up`: younger ones may be another checkout's
# (tests of a worktree) between its build and its start on this shared engine.
PRUNE_AFTER = 3600.0


def prune(keep: str) -> list[str]:
    """Remove the appliance images no container uses, but `keep` and the young ones."""
    return engine.remove_images(REPO, frozenset({keep}), made_before=time.time() - PRUNE_AFTER)


def ensure(out: Output, files: list[tuple[str, Path]] | None = None) -> str:
    """The appliance image of this checkout (or of `files`), made when missing (a few seconds; the
    base is made with the other component images). Returns its tag."""
    files = current_files() if files is None else files
    name = tag(files)
    if engine.image_exists(name):
        return name
    if not engine.image_exists(APPLIANCE_BASE_IMAGE):
        raise ServiceError(f"no image {APPLIANCE_BASE_IMAGE}; run ./platform up to make it")
    out.step(f"Building the appliance image {name}")
    began = time.monotonic()
    with tempfile.TemporaryFile() as fh:
        _write_context(fh, files, dockerfile(name.rsplit(":", 1)[1]))
        engine.build_platform_image(fh, name)
    out.detail(f"{name} ready in {time.monotonic() - began:.1f} s")
    return name
