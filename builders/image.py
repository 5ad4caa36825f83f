"""Image imports (`builds:create`): an image already in the platform registry becomes a Build.

Nothing is built or pulled here: the registry's HTTP API v2 says whether the image exists and what
its config EXPOSEs. The scheduler pulls the image when it starts a container.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from builders import registry
from core.errors import NotFound, ServiceError, ValidationError
from core.output import Output
from core.records import Build
from core.settings import Settings

DEFAULT_PORT = 5000
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_LISTS = MANIFEST_TYPES[2:]


@dataclass(frozen=True)
class Reference:
    registry: str  # host:port
    repository: str  # may contain slashes
    reference: str  # a tag, or a digest (sha256:...)

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


def parse_reference(settings: Settings, image: str) -> Reference:
    """`REGISTRY/name[:tag|@digest]` in the platform registry, else a ValidationError."""
    prefix = settings.registry + "/"
    if not image.startswith(prefix):
        raise ValidationError(
            f"image {image!r} is not in the platform registry: push it to {prefix}NAME:TAG first"
        )
    rest = image[len(prefix) :]
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        repo, ref = (rest[:colon], rest[colon + 1 :]) if colon > slash else (rest, "latest")
    if not repo or not ref or any(c.isspace() for c in image):
        raise ValidationError(f"invalid image name {image!r}: expected {prefix}NAME:TAG")
    return Reference(settings.registry, repo, ref)


def exposed_port(config_blob: dict[str, Any]) -> int | None:
    """The image's single EXPOSEd TCP port, as Deis v1 routes to it; None if it has none or several."""
    config = config_blob.get("config") or {}
    ports = [p for p in (config.get("ExposedPorts") or {}) if p.endswith("/tcp")]
    return int(ports[0].split("/")[0]) if len(ports) == 1 else None


def _get(settings: Settings, ref: Reference, url: str, accept: str | None = None) -> dict[str, Any]:
    status, _, body = registry.request(settings, "GET", url, accept)
    if status == 404:
        raise NotFound(f"image {ref} is not in the platform registry")
    if status != 200:
        raise ServiceError(f"the registry answered {status} for {ref}")
    try:
        return dict(json.loads(body))
    except ValueError as exc:
        raise ServiceError(f"the registry gave no JSON for {ref}: {exc}") from exc


def image_config(settings: Settings, ref: Reference) -> dict[str, Any]:
    """The image's config blob, read from the registry; NotFound if the registry lacks the image."""
    base = f"https://{ref.registry}/v2/{ref.repository}"
    manifest = _get(settings, ref, f"{base}/manifests/{ref.reference}", ", ".join(MANIFEST_TYPES))
    if manifest.get("mediaType") in _LISTS:  # a multi-platform image: take its first entry
        entries = manifest.get("manifests") or []
        if not entries:
            raise NotFound(f"image {ref} has an empty manifest list")
        manifest = _get(settings, ref, f"{base}/manifests/{entries[0]['digest']}", ", ".join(MANIFEST_TYPES))
    digest = (manifest.get("config") or {}).get("digest")
    if not digest:
        raise ValidationError(f"image {ref} has an old (schema 1) manifest: push it again")
    return _get(settings, ref, f"{base}/blobs/{digest}")


def import_image(settings: Settings, image: str, procfile: dict[str, str], by: str, out: Output) -> Build:
    """A Build of an image already in the platform registry; its port from its single EXPOSE."""
    ref = parse_reference(settings, image)
    out.step(f"Importing {ref}")
    port = exposed_port(image_config(settings, ref)) or DEFAULT_PORT
    out.detail(f"found in the registry; the app listens on port {port}")
    if procfile:
        out.detail(f"Procfile declares types -> {', '.join(sorted(procfile))}")
    return Build(image=str(ref), kind="image", procfile=procfile, port=port, created=time.time(), by=by)
