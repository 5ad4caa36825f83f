"""Log drains per app (as Heroku's): where the appliance forwards every line of an app's logs.

    apps/APP/drains/<sha8 of url>   {"url": "syslog+tls://host:port", "created": ts}

Kinds, by scheme:
    syslog://HOST:PORT        RFC 5424 messages over TCP, RFC 6587 octet-counted framing
    syslog+tls://HOST:PORT    the same over TLS (RFC 5425), the server's certificate verified
    https://HOST[:PORT]/PATH  batches POSTed in Heroku's logplex format (application/logplex-1: the same
                              octet-counted messages), the certificate verified; http:// likewise, plain
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
MAX_URL = 2048
_LOCAL = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
SYSLOG_SCHEMES = ("syslog", "syslog+tls")
HTTP_SCHEMES = ("https", "http")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_EXPECTED = "syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST[:PORT]/PATH"


@dataclass(frozen=True)
class Drain:
    url: str
    host: str
    port: int
    scheme: str = "syslog"

    @property
    def tls(self) -> bool:
        return self.scheme in ("syslog+tls", "https")


def own_ports(settings: Settings) -> frozenset[int]:
    """The platform's own ports on this host, which no drain may point at."""
    return frozenset(
        (
            settings.etcd_port,
            settings.etcd_peer_port,
            settings.registry_port,
            settings.ssh_port,
            settings.http_port,
            settings.https_port,
        )
    )


def parse(url: str, settings: Settings) -> Drain:
    """A drain URL, checked (see the module docstring for the kinds)."""
    if len(url) > MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ValidationError(
            f"invalid drain URL {url[:80]!r}: no spaces or control characters, at most {MAX_URL} characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"invalid drain URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SYSLOG_SCHEMES + HTTP_SCHEMES:
        raise ValidationError(f"unsupported drain {url!r}: expected {_EXPECTED}")
    if scheme in SYSLOG_SCHEMES:
        if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.username:
            raise ValidationError(f"invalid drain URL {url!r}: expected {scheme}://HOST:PORT")
        canonical = f"{scheme}://{parts.netloc}"
    else:
        if not parts.hostname or parts.fragment:
            raise ValidationError(f"invalid drain URL {url!r}: expected {scheme}://HOST[:PORT]/PATH")
        port = port if port is not None else _DEFAULT_PORTS[scheme]
        canonical = url
    if parts.hostname in _LOCAL and port in own_ports(settings):
        raise ValidationError(f"a drain may not point at the platform's own port {port}")
    return Drain(canonical, parts.hostname, port, scheme)


def redacted(url: str) -> str:
    """The URL without the password of its user part (for events, which collaborators read)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _key(app: str, url: str) -> str:
    return f"apps/{app}/drains/{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def add(store: Store, app: str, drain: Drain) -> None:
    if len(list_urls(store, app)) >= MAX_DRAINS:
        raise Conflict(f"{app} has {MAX_DRAINS} drains already: remove one first")
    if not store.create(_key(app, drain.url), {"url": drain.url, "created": time.time()}):
        raise Conflict(f"{app} drains to {redacted(drain.url)} already")


def remove(store: Store, app: str, url: str) -> None:
    for candidate in {url, url.rstrip("/")}:
        if store.delete(_key(app, candidate)):
            return
    raise NotFound(f"{app} has no drain {redacted(url)}: see drains")


def list_urls(store: Store, app: str) -> list[str]:
    return sorted(str(d["url"]) for d in store.children(f"apps/{app}/drains").values() if d)
