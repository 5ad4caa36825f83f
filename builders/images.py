"""Images made on the host from Debian packages, as the official Debian images are: debootstrap a
root, install packages into it with apt, add the platform's files, then `tar | docker import`.
No image is ever pulled. The stack image and the buildpack stacks (builders.stacks) are made here.

    DebootstrapImage          what to make: packages, apt packages, files, `docker import --change`s
    ensure_debootstrap_image  make it if missing, stale (its digest label differs) or forced
    ensure_stack_image        the stack every Dockerfile app starts FROM

The argv builders are pure (tests compare them); the runners below them log to LOG_DIR/LABEL.log.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builders import engine
from core import dockercli
from core.errors import ServiceError
from core.output import Output
from core.proc import file_lock, last_line, run_logged
from core.settings import Settings

DEBIAN_SUITE = "bookworm"
STACK_PACKAGES = ("python3", "ca-certificates")
DIGEST_LABEL = "io.deis.stack-digest"
# debootstrap targets under the state dir; one left by an interrupted build is removed by the next
STACK_TMP_PREFIX = "stack-build-"  # that of the stack image; others use LABEL-build-


# -- pure builders ----------------------------------------------------------------------------------


def debootstrap_argv(
    target: Path,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
    packages: tuple[str, ...] = STACK_PACKAGES,
) -> list[str]:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(target)]
    if mirror:
        argv.append(mirror)
    return argv


def chroot_apt_argv(root: Path, packages: tuple[str, ...]) -> list[str]:
    """apt-get inside a debootstrapped root (on the host's network): it resolves what debootstrap's
    own resolver cannot (virtual packages, as npm's dependencies need)."""
    return ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]


def mount_proc_argv(root: Path) -> list[str]:
    return ["mount", "-t", "proc", "proc", str(root / "proc")]


def tar_argv(root: Path) -> list[str]:
    return ["tar", "-C", str(root), "-c", "."]


def umount_argv(path: str) -> list[str]:
    return ["umount", "--lazy", path]


def mounts_under(root: Path, mountinfo: str) -> list[str]:
    """Mount points at or below ``root`` in /proc/self/mountinfo text, deepest first."""
    prefix = str(root).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \040, \011, \012, \134.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


# -- making images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebootstrapImage:
    """An image made on the host from Debian packages: debootstrap, then ``prepare(root)``, then import."""

    image: str
    packages: tuple[str, ...]  # debootstrap --include
    apt_packages: tuple[str, ...] = ()  # then apt-get install in the root (full dependency resolution)
    changes: tuple[str, ...] = ()  # Dockerfile instructions applied by `docker import --change`
    prepare: Callable[[Path], None] | None = None  # adds the platform's own files to the root
    label: str = "stack"  # the lock and log name
    # An image without this `io.deis.stack-digest` label is stale (made from other packages or files).
    digest: str = ""


def ensure_stack_image(
    settings: Settings,
    out: Output,
    force: bool = False,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
) -> bool:
    """Build ``settings.stack_image`` (debootstrap + docker import) if missing or ``force``. True if built."""
    return ensure_debootstrap_image(
        settings, out, DebootstrapImage(settings.stack_image, STACK_PACKAGES), force, suite, mirror
    )


def is_current(spec: DebootstrapImage) -> bool:
    """Whether `spec.image` exists and is made from its spec (its digest label)."""
    return _current(spec)


def _current(spec: DebootstrapImage) -> bool:
    if spec.digest:
        return engine.image_label(spec.image, DIGEST_LABEL) == spec.digest
    return engine.image_exists(spec.image)


def ensure_debootstrap_image(
    settings: Settings,
    out: Output,
    spec: DebootstrapImage,
    force: bool = False,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
) -> bool:
    """Make ``spec.image`` if missing, stale or ``force``: debootstrap on the host, then docker import.

    Containers have no network access to rely on, so every package is installed here, on the host.
    True if the image was (re)made.
    """
    image = spec.image
    if not force and _current(spec):
        return False
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with _lock(settings, spec.label):
        if not force and _current(spec):  # made meanwhile by someone holding the lock
            return False
        prefix = f"{spec.label}-build-"
        for stale in settings.state_dir.glob(f"{prefix}*"):
            _remove_tree(stale)
        log = _logfile(settings, spec.label)
        began = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=settings.state_dir))
        try:
            root = tmp / "rootfs"
            out.step(f"Building the {spec.label} image {image} (debootstrap {suite}, a minute or two)")
            out.detail(f"packages: {', '.join(spec.packages)}")
            out.detail(f"log: {log}")
            run_logged(
                debootstrap_argv(root, suite, mirror, spec.packages), log, "debootstrap", "debootstrap"
            )
            if spec.apt_packages:
                out.step(f"Installing {', '.join(spec.apt_packages)} into it with apt-get")
                _apt_install(root, spec.apt_packages, log)
            if spec.prepare is not None:
                spec.prepare(root)
            # apt's package cache is of no use in an image that never runs apt (no network inside)
            for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                deb.unlink()
            for index in (root / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
                index.unlink()
            changes = spec.changes + ((f"LABEL {DIGEST_LABEL}={spec.digest}",) if spec.digest else ())
            out.step(f"Importing it into docker as {image}")
            _import_tree(root, image, log, changes)
        finally:
            _remove_tree(tmp)
        out.detail(f"{image} ready in {time.monotonic() - began:.0f} s")
        return True


def _lock(settings: Settings, name: str) -> contextlib.AbstractContextManager[None]:
    return file_lock(settings.run_dir / f"{name}.lock")


def _logfile(settings: Settings, label: str) -> Path:
    return settings.log_dir / f"{label}.log"


def _import_tree(root: Path, image: str, log: Path, changes: tuple[str, ...] = ()) -> None:
    """``tar -C ROOT -c . | docker import - IMAGE``, as two processes joined by a pipe."""
    imp_argv = dockercli.import_(image, changes)
    with open(log, "ab") as fh:
        fh.write(f"==> {' '.join(tar_argv(root))} | {' '.join(imp_argv)}\n".encode())
        fh.flush()
        try:
            tar = subprocess.Popen(
                tar_argv(root), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fh
            )
        except FileNotFoundError as exc:
            raise ServiceError("tar not found") from exc
        assert tar.stdout is not None
        try:
            imp = subprocess.Popen(imp_argv, stdin=tar.stdout, stdout=fh, stderr=fh)
        except FileNotFoundError as exc:
            tar.kill()
            tar.wait()
            raise ServiceError("docker import: docker not found (install the docker.io package)") from exc
        finally:
            tar.stdout.close()  # the import holds the read end now; tar sees SIGPIPE if it dies
        imp_code = imp.wait()
        tar_code = tar.wait()
    if imp_code != 0:
        raise ServiceError(f"docker import failed with status {imp_code}: {last_line(log)} (see {log})")
    if tar_code != 0:
        raise ServiceError(
            f"tar of the stack root failed with status {tar_code}: {last_line(log)} (see {log})"
        )


def _apt_install(root: Path, packages: tuple[str, ...], log: Path) -> None:
    # No daemon may start inside the root (policy-rc.d), and /proc is there only while apt runs.
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    run_logged(mount_proc_argv(root), log, "mount /proc", "mount")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    try:
        run_logged(chroot_apt_argv(root, packages), log, "apt-get install", "apt", env=env)
    finally:
        subprocess.run(
            umount_argv(str(root / "proc")), stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        policy.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    """Remove a debootstrap target, unmounting whatever an interrupted debootstrap left mounted in it."""
    if not path.exists():
        return
    real = path.resolve()
    for point in mounts_under(real, _mountinfo()):
        subprocess.run(umount_argv(point), stdin=subprocess.DEVNULL, capture_output=True, check=False)
    left = mounts_under(real, _mountinfo())
    if left:
        raise ServiceError(f"left {path} in place: {left[0]} is still mounted")
    shutil.rmtree(real)


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ""
