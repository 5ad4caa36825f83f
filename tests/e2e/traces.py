"""What a platform holds about an app, read straight from each service (not through the appliance)."""

from __future__ import annotations

import json
import time
from typing import Any

import docker
import etcd

from builders import registry
from tests.harness import Harness


def etcd_tree(h: Harness, prefix: str = "") -> dict[str, Any]:
    """Every leaf under /deis/PREFIX with its value (an empty dict if there is none)."""
    tls = h.settings.etcd_tls  # etcd asks for the platform's client certificate
    client = etcd.Client(
        host="127.0.0.1",
        port=h.settings.etcd_port,
        protocol="https",
        cert=(str(tls.cert), str(tls.key)),
        ca_cert=str(tls.ca),
    )
    try:
        root = client.read(f"/deis/{prefix}".rstrip("/"), recursive=True)
    except etcd.EtcdKeyNotFound:
        return {}
    return {n.key: n.value for n in root.leaves if n.key and not n.dir}


def registry_get(h: Harness, path: str) -> tuple[int, Any]:
    """GET of the registry's API with the platform's credentials: its status, and its JSON if 200."""
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    status, _, body = registry.request(h.settings, "GET", f"{h.settings.registry_url}/v2/{path}", accept)
    return status, json.loads(body) if status == 200 else None


def registry_tags(h: Harness, app: str) -> list[str]:
    status, body = registry_get(h, f"{app}/tags/list")
    return sorted((body or {}).get("tags") or []) if status == 200 else []


def local_images(h: Harness, app: str) -> list[str]:
    repo = f"{h.settings.registry}/{app}"
    return sorted(t for i in docker.from_env().images.list(name=repo) for t in i.tags)


def traces(h: Harness, app: str) -> dict[str, Any]:
    """Everything of `app` the platform keeps: a refusal must leave this unchanged, a destroy empty."""
    return {
        "etcd": etcd_tree(h, f"apps/{app}"),
        "lock": etcd_tree(h, f"locks/{app}"),
        "containers": h.containers(app),
        "local_images": local_images(h, app),
        "registry_tags": registry_tags(h, app),
        "repo": (h.settings.repos_dir / f"{app}.git").exists(),
        "nginx": (h.settings.nginx_dir / "apps" / f"{app}.conf").exists(),
        "nginx_log": (h.settings.nginx_dir / "logs" / f"{app}.access.log").exists(),
    }


def settled_traces(h: Harness, app: str, timeout: float = 30) -> dict[str, Any]:
    """`traces` once no one holds the app's lock: the reconciler may briefly take it after a deploy
    (tidying what the deploy retired), which is not a change anybody made."""
    deadline = time.monotonic() + timeout
    while True:
        found = traces(h, app)
        if not found["lock"] or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def people(h: Harness) -> dict[str, Any]:
    """Users and keys: what keys:* and perms:* --admin change."""
    return {"users": etcd_tree(h, "users"), "keys": etcd_tree(h, "keys")}
