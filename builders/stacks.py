"""The buildpack stack images, made on the host from Debian packages (no image is ever pulled).

    slugbuilder  the stack plus build tools: buildpacks' bin/detect, bin/compile, bin/release run in it
    slugrunner   the stack plus language runtimes and /runner/init: every buildpack app image's base

Both are made by `builders.images.ensure_debootstrap_image` (debootstrap on the host, which reaches
Debian's mirror; containers have no network to rely on), once, and again only when their packages or
the runner's init script change (the image's digest label) or when forced (`deis stacks:build --force`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builders import images
from core.output import Output
from core.settings import Settings

HERE = Path(__file__).resolve().parent
RUNNER_INIT = HERE / "runner" / "init"

BUILDER_IMAGE = "deis/slugbuilder:bookworm"
RUNNER_IMAGE = "deis/slugrunner:bookworm"
# debootstrap's resolver ignores virtual packages, which npm's dependencies need: those are installed
# afterwards with apt-get in the root. No build-essential: gcc and friends double the image's build
# time; pure-python wheels and JavaScript packages need none.
BUILDER_PACKAGES = ("python3", "python3-pip", "python3-venv", "git", "ca-certificates")
BUILDER_APT_PACKAGES = ("nodejs", "npm")
RUNNER_PACKAGES = ("python3", "nodejs", "ca-certificates")
RUNNER_CHANGES = ('ENTRYPOINT ["/runner/init"]', "WORKDIR /app", "ENV HOME=/app")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _prepare_runner(root: Path) -> None:
    (root / "runner").mkdir(exist_ok=True)
    shutil.copyfile(RUNNER_INIT, root / "runner" / "init")
    (root / "runner" / "init").chmod(0o755)
    (root / "app").mkdir(exist_ok=True)


def builder_spec() -> images.DebootstrapImage:
    return images.DebootstrapImage(
        image=BUILDER_IMAGE,
        packages=BUILDER_PACKAGES,
        apt_packages=BUILDER_APT_PACKAGES,
        label="slugbuilder",
        digest=_digest(*(p.encode() for p in (*BUILDER_PACKAGES, "--", *BUILDER_APT_PACKAGES))),
    )


def runner_spec() -> images.DebootstrapImage:
    return images.DebootstrapImage(
        image=RUNNER_IMAGE,
        packages=RUNNER_PACKAGES,
        changes=RUNNER_CHANGES,
        prepare=_prepare_runner,
        label="slugrunner",
        digest=_digest(
            *(p.encode() for p in RUNNER_PACKAGES),
            *(c.encode() for c in RUNNER_CHANGES),
            RUNNER_INIT.read_bytes(),
        ),
    )


def specs() -> list[images.DebootstrapImage]:
    return [runner_spec(), builder_spec()]


def ensure_stacks(settings: Settings, out: Output, force: bool = False) -> list[str]:
    """Make the slugrunner and slugbuilder images if missing, stale or forced; returns those made."""
    made = []
    for spec in specs():
        if images.ensure_debootstrap_image(settings, out, spec, force=force):
            made.append(spec.image)
    return made


def ensure_all(
    settings: Settings, out: Output, force: bool = False, extra: Sequence[images.DebootstrapImage] = ()
) -> None:
    """The stack image and the buildpack stacks (and `extra`: the platform components' images), each
    made only when missing (or stale, or forced).

    Each debootstrap spends much of its time waiting on the mirror and dpkg's fsyncs: made side by
    side, they take little longer than the largest alone."""
    todo = [*specs(), *extra]
    with ThreadPoolExecutor(max_workers=1 + len(todo)) as pool:
        jobs = [
            pool.submit(images.ensure_stack_image, settings, out, force=force),
            *(pool.submit(images.ensure_debootstrap_image, settings, out, spec, force) for spec in todo),
        ]
        for job in jobs:
            job.result()
