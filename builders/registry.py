"""Forgetting an app's images: its tags in the local docker and its repository in the platform registry.

The registry speaks the HTTP API v2 and is started with `storage.delete.enabled`: a manifest is
deleted by digest (never by tag), which removes every tag pointing at it; deleting a blob through
a repository only unlinks it from that repository (layers shared with other apps stay). The bytes
themselves go at the registry's next `garbage-collect`.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from core import pki
from core.errors import ServiceError
from core.names import check_app
from core.settings import Settings

# Every manifest kind `docker push` writes; without them the registry answers with a schema1
# conversion whose digest cannot be deleted.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 30.0


def tags_url(registry: str, app: str) -> str:
    return f"https://{registry}/v2/{check_app(app)}/tags/list"


def manifest_url(registry: str, app: str, reference: str) -> str:
    return f"https://{registry}/v2/{check_app(app)}/manifests/{urllib.parse.quote(reference, safe=':')}"


def blob_url(registry: str, app: str, digest: str) -> str:
    return f"https://{registry}/v2/{check_app(app)}/blobs/{urllib.parse.quote(digest, safe=':')}"


def blob_digests(manifest: dict[str, Any]) -> list[str]:
    """The config and layer blobs an image manifest links into its repository (none for an index)."""
    blobs = [manifest["config"]["digest"]] if isinstance(manifest.get("config"), dict) else []
    blobs += [layer["digest"] for layer in manifest.get("layers") or [] if "digest" in layer]
    return blobs


_contexts: dict[Path, ssl.SSLContext] = {}


def _context(settings: Settings) -> ssl.SSLContext:
    """Trusting only the platform's CA (made once per CA file: loading it is not free)."""
    ca = pki.ca_path(settings.tls_dir)
    if ca not in _contexts:
        try:
            _contexts[ca] = ssl.create_default_context(cafile=str(ca))
        except OSError as exc:
            raise ServiceError(f"cannot read the platform's CA ({exc.strerror}: {ca}); run as root") from exc
    return _contexts[ca]


def request(
    settings: Settings, method: str, url: str, accept: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the platform registry's API, over TLS with the platform's credentials; its
    status, headers and body (an HTTP error too), or ServiceError when it does not answer."""
    headers = {"Authorization": settings.registry_auth().header()}
    if accept:
        headers["Accept"] = accept
    req = urllib.request.Request(url, method=method, headers=headers)
    https = urllib.request.HTTPSHandler(context=_context(settings))
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({}), https).open(
            req, timeout=TIMEOUT
        ) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError(f"the registry is unreachable ({method} {url}): {exc}") from exc


def _request(
    settings: Settings, method: str, url: str, accept: bool = False
) -> tuple[int, dict[str, str], bytes]:
    return request(settings, method, url, ", ".join(MANIFEST_TYPES) if accept else None)


def _expect(status: int, ok: tuple[int, ...], what: str, body: bytes) -> None:
    if status not in ok:
        detail = body.decode("utf-8", "replace").strip()[:200]
        raise ServiceError(f"the registry refused to {what} (HTTP {status}): {detail}")


def registry_tags(settings: Settings, app: str) -> list[str]:
    status, _, body = _request(settings, "GET", tags_url(settings.registry, app))
    if status == 404:  # the app never pushed an image
        return []
    _expect(status, (200,), f"list {app}'s tags", body)
    return sorted(json.loads(body).get("tags") or [])


def delete_repository(settings: Settings, app: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Delete every manifest of `app` (and unlink its blobs) from the registry, except those `keep`
    names by tag or digest (and the blobs they use); returns the deleted tags."""
    tags = registry_tags(settings, app)
    digests: dict[str, dict[str, Any]] = {}
    kept: dict[str, dict[str, Any]] = {}
    tag_digest: dict[str, str] = {}
    for tag in tags:
        status, headers, body = _request(
            settings, "GET", manifest_url(settings.registry, app, tag), accept=True
        )
        if status == 404:  # deleted meanwhile with a sibling tag
            continue
        _expect(status, (200,), f"read {app}:{tag}", body)
        digest = {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")
        if not digest:
            raise ServiceError(f"the registry gave no digest for {app}:{tag}")
        tag_digest[tag] = digest
        (kept if tag in keep or digest in keep else digests)[digest] = json.loads(body)
    in_use = {blob for manifest in kept.values() for blob in blob_digests(manifest)}
    for digest, manifest in digests.items():
        if digest in kept:
            continue  # another tag that stays names the same manifest
        for blob in blob_digests(manifest):
            if blob in in_use:
                continue
            status, _, body = _request(settings, "DELETE", blob_url(settings.registry, app, blob))
            _expect(status, (202, 404), f"delete blob {blob} of {app}", body)
        status, _, body = _request(settings, "DELETE", manifest_url(settings.registry, app, digest))
        _expect(status, (202, 404), f"delete manifest {digest} of {app}", body)
    return [t for t in tags if t not in tag_digest or tag_digest[t] not in kept]
