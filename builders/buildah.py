"""buildah command lines, built in one place: pure functions that return argv lists and run nothing
(builders.dockerbuild runs them). Tests compare them exactly.

Storage: every app has its own store (its layers and build cache stay its own: a cached layer made
with an app's secret is never another app's cache hit); base images live once in a shared store
that every app's store reads as an additional image store (`overlay.imagestore`). The overlay home
is never bind-mounted over itself (`skip_mount_home`), so nothing stays mounted between builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core import regauth

BUILDAH = "buildah"
NSENTER = "nsenter"


@dataclass(frozen=True)
class Store:
    root: Path
    runroot: Path
    images: Path | None = None  # a shared, read-only image store (the imported base images)


def base(store: Store) -> list[str]:
    argv = [BUILDAH, "--root", str(store.root), "--runroot", str(store.runroot)]
    argv += ["--storage-driver", "overlay", "--storage-opt", "overlay.skip_mount_home=true"]
    if store.images is not None:
        argv += ["--storage-opt", f"overlay.imagestore={store.images}"]
    return argv


def bud(
    store: Store,
    context: Path,
    dockerfile: Path,
    tag: str,
    build_args: Sequence[str] = (),
    secrets: Mapping[str, Path] | None = None,
    iidfile: Path | None = None,
) -> list[str]:
    """`buildah bud` in the caller's network namespace (`--network host`: RUN steps share it; run it
    inside the build's own namespace with `in_netns`). Build args are named only: their values come
    from buildah's environment, never argv (argv is world-readable in /proc)."""
    argv = [*base(store), "bud", "--isolation", "oci", "--network", "host", "--pull=never"]
    argv += ["--layers", "--force-rm", "--format", "docker", "-f", str(dockerfile), "-t", tag]
    if iidfile is not None:
        argv += ["--iidfile", str(iidfile)]
    for name in build_args:
        argv += ["--build-arg", name]
    for sid, path in (secrets or {}).items():
        argv += ["--secret", f"id={sid},src={path}"]
    return [*argv, str(context)]


def limits(memory: int, cgroup_parent: str) -> list[str]:
    """`bud` options (before its context): each RUN step's memory limit, and the cgroup the steps
    run in (builders.buildcg: the build's pids limit over them all)."""
    return ["--memory", f"{memory}b", "--cgroup-parent", cgroup_parent]


def in_netns(netns: Path, argv: Sequence[str]) -> list[str]:
    """Run `argv` in network namespace `netns` only (not `ip netns exec`: that remounts /sys, which
    hides cgroup v1 from the runtime)."""
    return [NSENTER, f"--net={netns}", "--", *argv]


@dataclass(frozen=True)
class RegistryAccess:
    """How buildah reaches the platform registry: docker's auth file (never credentials in argv, which
    any local user reads in /proc) and a directory holding only the CA it verifies the registry by."""

    authfile: Path
    cert_dir: Path

    @classmethod
    def of(cls, tls_dir: Path) -> RegistryAccess:
        return cls(regauth.authfile_path(tls_dir), regauth.ca_dir(tls_dir))

    def flags(self) -> list[str]:
        return ["--authfile", str(self.authfile), "--cert-dir", str(self.cert_dir), "--tls-verify=true"]


def push(store: Store, image: str, dest: str, access: RegistryAccess) -> list[str]:
    """Push to the platform registry as a docker v2 schema 2 image."""
    return [*base(store), "push", "--quiet", *access.flags(), "--format", "v2s2", image, f"docker://{dest}"]


def pull(store: Store, ref: str, access: RegistryAccess) -> list[str]:
    return [*base(store), "pull", "--quiet", *access.flags(), f"docker://{ref}"]


def tag(store: Store, image: str, name: str) -> list[str]:
    return [*base(store), "tag", image, name]


def image_id(store: Store, name: str) -> list[str]:
    return [*base(store), "inspect", "--type", "image", "--format", "{{.FromImageID}}", name]


def remove_containers(store: Store) -> list[str]:
    """Every working container of the store (an interrupted build's)."""
    return [*base(store), "rm", "--all"]
