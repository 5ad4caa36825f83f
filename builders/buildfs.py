"""The host's side of the trees a buildpack build controls (/app, /cache, the clones of buildpacks).

Everything in them was written by tenant code running as the build user (settings.build_uid), so the
host, which runs as root, never follows a path inside them and never writes into them:

    read_output    a result file the build left (O_NOFOLLOW, a regular file, bounded in size)
    hand_over      the tree chowned to the build user, link by link (never through a symlink)
    safe_extract   one member of a tar the tenant made, landing inside the tree and without privileges
    sanitize       after a build: setuid/setgid bits stripped, devices, FIFOs and sockets removed,
                   everything owned by the build user (a cache an earlier, root build left is migrated)

All of it works on directory file descriptors (os.fwalk): a symlink the build planted is an entry
like any other, never a way out of the tree.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import tarfile
from pathlib import Path

from core.errors import BuildError

SPECIAL = (stat.S_ISCHR, stat.S_ISBLK, stat.S_ISFIFO, stat.S_ISSOCK)
PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID


def read_output(path: Path, limit: int, what: str) -> bytes | None:
    """The bytes of a file a build wrote (None when it is not there). A symlink, a FIFO, a device or a
    file over `limit` bytes is refused in one line naming `what`; opening never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BuildError(f"{what} is a symbolic link: the build may only leave a regular file") from exc
        raise BuildError(f"cannot read {what}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildError(f"{what} is not a regular file: the build may only leave a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BuildError(f"{what} is larger than {limit // 1024} KiB")
    return data


def hand_over(tree: Path, uid: int) -> None:
    """Make `tree` (a fresh export, a cache) the build user's, without following any symlink in it."""
    os.chown(tree, uid, uid, follow_symlinks=False)
    for _root, dirs, files, dfd in os.fwalk(tree, follow_symlinks=False):
        for name in (*dirs, *files):
            os.chown(name, uid, uid, dir_fd=dfd, follow_symlinks=False)


def sanitize(tree: Path, uid: int) -> int:
    """After a build: no setuid/setgid bit, no device, FIFO or socket left in `tree`, every entry the
    build user's. Returns how many entries it had to change."""
    if not tree.is_dir() or tree.is_symlink():
        return 0
    changed = _fix(str(tree), None, str(tree), uid)
    for _root, dirs, files, dfd in os.fwalk(tree, follow_symlinks=False):
        for name in (*dirs, *files):
            changed += _fix(name, dfd, name, uid)
    return changed


def _fix(name: str, dfd: int | None, shown: str, uid: int) -> int:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if any(test(st.st_mode) for test in SPECIAL):
        os.unlink(name, dir_fd=dfd)
        return 1
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid == uid and st.st_gid == uid:
            return 0
        os.chown(name, uid, uid, dir_fd=dfd, follow_symlinks=False)
        return 1
    if not st.st_mode & PRIVILEGE_BITS and st.st_uid == uid and st.st_gid == uid:
        return 0
    # chmod has no "don't follow" on Linux: open the entry itself (O_NOFOLLOW) and change it by fd.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    try:
        now = os.fstat(fd)
        if not (stat.S_ISREG(now.st_mode) or stat.S_ISDIR(now.st_mode)):
            raise BuildError(f"cannot clean the build cache: {shown} changed while it was cleaned")
        os.fchown(fd, uid, uid)  # before the chmod: a chown clears the bits of some file systems anyway
        os.fchmod(fd, stat.S_IMODE(now.st_mode) & ~PRIVILEGE_BITS)
    finally:
        os.close(fd)
    return 1


def safe_extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """One member of a tenant's tar into `dest`: `extract(..., filter="tar")`; on a Python without
    extraction filters (before 3.11.4: Debian 12's, which the appliance's image runs) the same checks
    by hand: no member lands outside `dest`, and none keeps setuid, setgid, sticky or group/other
    write bits."""
    if hasattr(tarfile, "tar_filter"):
        tar.extract(member, dest, filter="tar")
        return
    name = member.name.lstrip("/" + os.sep)
    root = os.path.realpath(dest)
    if os.path.isabs(name) or os.path.commonpath([os.path.realpath(os.path.join(root, name)), root]) != root:
        raise BuildError(f"the build context holds {member.name!r}, which lies outside it")
    safe = copy.copy(member)
    safe.name = name
    if not (member.issym() or member.islnk()):
        safe.mode = member.mode & 0o755
    tar.extract(safe, dest, set_attrs=not member.issym())
