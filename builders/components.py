"""The images the platform's own components run from, made on the host from Debian packages like the
stacks (builders.images: debootstrap + `docker import`, no image is ever pulled), and made again only
when their package list changes (the image's digest label).

    router    nginx-light: the router's nginx runs in a container the engine supervises
    services  etcd-server and docker-registry: one image for both (one debootstrap fewer on a
              fresh machine), each component's container runs its own program from it
    appliance-base  what the appliance runs besides its Python code (builders.appliance_image adds
              that as a layer): python3, git (receive-pack), buildah, iproute2 and iptables (each
              Dockerfile build's network namespace), nginx-light (`nginx -t` of the router's config),
              and the host's own docker CLI (one-off `run`s attach through it)
    addons    postgresql-15 and redis-server: the backing services' image (one for both kinds)
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from builders import images
from core.output import Output
from core.settings import Settings

ROUTER_IMAGE = "deis/router:bookworm"
ROUTER_PACKAGES = ("nginx-light", "ca-certificates")
SERVICES_IMAGE = "deis/services:bookworm"
SERVICES_PACKAGES = ("etcd-server", "docker-registry", "ca-certificates")
APPLIANCE_BASE_IMAGE = "deis/appliance-base:bookworm"
APPLIANCE_PACKAGES = ("python3", "git", "ca-certificates", "iproute2", "procps")
# runc: buildah only recommends a runtime, and images are made without recommends.
APPLIANCE_APT_PACKAGES = ("buildah", "runc", "iptables", "nginx-light")
# The docker CLI from the host's docker.io (the Debian package would bring dockerd and containerd too).
DOCKER_CLI = Path("/usr/bin/docker")
ADDONS_IMAGE = "deis/addons:bookworm"
ADDONS_PACKAGES = ("ca-certificates",)
# postgresql-15's dependencies (postgresql-common, locales, ssl-cert) need apt's full resolver
ADDONS_APT_PACKAGES = ("postgresql-15", "postgresql-client-15", "redis-server", "redis-tools")


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part.encode())
    return h.hexdigest()[:16]


def router_spec() -> images.DebootstrapImage:
    return images.DebootstrapImage(
        image=ROUTER_IMAGE,
        packages=ROUTER_PACKAGES,
        label="router",
        digest=_digest(*ROUTER_PACKAGES),
    )


def services_spec() -> images.DebootstrapImage:
    return images.DebootstrapImage(
        image=SERVICES_IMAGE,
        packages=SERVICES_PACKAGES,
        label="services",
        digest=_digest(*SERVICES_PACKAGES),
    )


def _add_docker_cli(root: Path) -> None:
    shutil.copy2(DOCKER_CLI, root / "usr" / "bin" / "docker")


def appliance_base_spec() -> images.DebootstrapImage:
    cli = DOCKER_CLI.stat().st_size if DOCKER_CLI.exists() else 0
    return images.DebootstrapImage(
        image=APPLIANCE_BASE_IMAGE,
        packages=APPLIANCE_PACKAGES,
        apt_packages=APPLIANCE_APT_PACKAGES,
        prepare=_add_docker_cli,
        label="appliance-base",
        digest=_digest(*APPLIANCE_PACKAGES, *APPLIANCE_APT_PACKAGES, f"docker-cli-{cli}"),
    )


def addons_spec() -> images.DebootstrapImage:
    return images.DebootstrapImage(
        image=ADDONS_IMAGE,
        packages=ADDONS_PACKAGES,
        apt_packages=ADDONS_APT_PACKAGES,
        label="addons",
        digest=_digest(*ADDONS_PACKAGES, "--", *ADDONS_APT_PACKAGES),
    )


def specs() -> list[images.DebootstrapImage]:
    """Every component image; `builders.stacks.ensure_all` makes them side by side with the stacks."""
    return [router_spec(), services_spec(), appliance_base_spec(), addons_spec()]


def ensure_router_image(settings: Settings, out: Output, force: bool = False) -> bool:
    """Make the router's image if missing, stale or forced; True if it was made."""
    return images.ensure_debootstrap_image(settings, out, router_spec(), force=force)


def ensure_services_image(settings: Settings, out: Output, force: bool = False) -> bool:
    """Make the etcd and registry image if missing, stale or forced; True if it was made."""
    return images.ensure_debootstrap_image(settings, out, services_spec(), force=force)


def ensure_addons_image(settings: Settings, out: Output, force: bool = False) -> bool:
    """Make the postgres and redis image if missing, stale or forced; True if it was made."""
    return images.ensure_debootstrap_image(settings, out, addons_spec(), force=force)


def addons_image_ready() -> bool:
    """Whether the postgres and redis image is there and made from today's package list."""
    return images.is_current(addons_spec())
