"""Log drains per app (as Heroku's): where the appliance forwards every line of an app's logs.

    apps/APP/drains/<sha8 of url>   {"url": "syslog://host:port", "created": ts}

Only syslog over TCP (RFC 5424 messages, RFC 6587 octet-counted framing) for now: `syslog://HOST:PORT`.
A drain may not point at the platform's own ports on this host (etcd, registry, SSH, router).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import Conflict, NotFound, ValidationError
from core.settings import Settings
from releaser.store import Store

MAX_DRAINS = 5  # per app
_LOCAL = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


@dataclass(frozen=True)
class Drain:
    url: str
    host: str
    port: int


def parse(url: str, settings: Settings) -> Drain:
    """A drain URL, checked: `syslog://HOST:PORT`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"invalid drain URL {url!r}: {exc}") from exc
    if parts.scheme != "syslog":
        raise ValidationError(f"unsupported drain {url!r}: only syslog://HOST:PORT (TCP, RFC 5424) for now")
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValidationError(f"invalid drain URL {url!r}: expected syslog://HOST:PORT")
    own = {
        settings.etcd_port,
        settings.etcd_peer_port,
        settings.registry_port,
        settings.ssh_port,
        settings.http_port,
        settings.https_port,
    }
    if parts.hostname in _LOCAL and port in own:
        raise ValidationError(f"a drain may not point at the platform's own port {port}")
    return Drain(f"syslog://{parts.netloc}", parts.hostname, port)


def _key(app: str, url: str) -> str:
    return f"apps/{app}/drains/{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def add(store: Store, app: str, drain: Drain) -> None:
    if len(list_urls(store, app)) >= MAX_DRAINS:
        raise Conflict(f"{app} has {MAX_DRAINS} drains already: remove one first")
    if not store.create(_key(app, drain.url), {"url": drain.url, "created": time.time()}):
        raise Conflict(f"{app} drains to {drain.url} already")


def remove(store: Store, app: str, url: str) -> None:
    for candidate in {url, url.rstrip("/")}:
        if store.delete(_key(app, candidate)):
            return
    raise NotFound(f"{app} has no drain {url}: see drains")


def list_urls(store: Store, app: str) -> list[str]:
    return sorted(str(d["url"]) for d in store.children(f"apps/{app}/drains").values() if d)
