"""The one module that talks to etcd. Everything else sees JSON values under string keys.

python-etcd speaks only etcd's v2 API (removed in etcd 3.6): keeping every call here keeps a move to
the v3 API to this file. It blocks; async callers use threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import etcd

from core.errors import ServiceError, StoreUnavailable
from core.pki import EtcdTLS

if TYPE_CHECKING:
    from core.settings import Settings

ROOT = "/deis"


@contextmanager
def _converted(what: str) -> Iterator[None]:
    try:
        yield
    except etcd.EtcdConnectionFailed as exc:
        raise StoreUnavailable(f"etcd is unreachable ({what})") from exc
    except (etcd.EtcdKeyNotFound, etcd.EtcdAlreadyExist, etcd.EtcdCompareFailed):
        raise
    except etcd.EtcdException as exc:
        raise ServiceError(f"etcd failed ({what}): {exc}") from exc


class Store:
    """JSON values in etcd's v2 key space, all under /deis."""

    def __init__(self, url: str | list[str], read_timeout: float = 10, tls: EtcdTLS | None = None) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        parts = [urlsplit(u) for u in urls]
        self.url = urls[0]
        hosts = tuple((u.hostname or "127.0.0.1", u.port or 2379) for u in parts)
        # etcd asks for a client certificate (core.pki): without one it refuses the connection.
        # Several members: python-etcd moves to the next when one stops answering.
        self.client = etcd.Client(
            host=hosts if len(hosts) > 1 else hosts[0][0],
            port=hosts[0][1],
            protocol=parts[0].scheme or "http",
            read_timeout=read_timeout,
            cert=None if tls is None else (str(tls.cert), str(tls.key)),
            ca_cert=None if tls is None else str(tls.ca),
            allow_reconnect=len(hosts) > 1,
        )

    @classmethod
    def of(cls, settings: Settings, read_timeout: float = 10) -> Store:
        """The platform's store: its etcd (every member of a cluster) over mutual TLS with the
        platform's client certificate."""
        return cls(settings.etcd_urls, read_timeout, settings.etcd_tls)

    @staticmethod
    def _key(key: str) -> str:
        return f"{ROOT}/{key.strip('/')}"

    def get(self, key: str) -> Any | None:
        with _converted(f"read {key}"):
            try:
                return json.loads(self.client.read(self._key(key)).value)
            except etcd.EtcdKeyNotFound:
                return None

    def get_with_index(self, key: str) -> tuple[Any | None, int | None]:
        """The value and its modifiedIndex, for compare-and-swap."""
        with _converted(f"read {key}"):
            try:
                r = self.client.read(self._key(key))
            except etcd.EtcdKeyNotFound:
                return None, None
            return json.loads(r.value), r.modifiedIndex

    def put(self, key: str, value: Any, ttl: int | None = None) -> None:
        with _converted(f"write {key}"):
            self.client.write(self._key(key), json.dumps(value), ttl=ttl)

    def create(self, key: str, value: Any, ttl: int | None = None) -> bool:
        """Write only if the key does not exist yet; False if it does."""
        with _converted(f"create {key}"):
            try:
                self.client.write(self._key(key), json.dumps(value), ttl=ttl, prevExist=False)
                return True
            except etcd.EtcdAlreadyExist:
                return False

    def append(self, key: str, value: Any, ttl: int | None = None) -> str:
        """Add `value` under directory `key` with an etcd in-order key (sorted by creation)."""
        with _converted(f"append {key}"):
            r = self.client.write(self._key(key), json.dumps(value), ttl=ttl, append=True)
            return str(r.key).rsplit("/", 1)[-1]

    def swap(self, key: str, value: Any, index: int | None, ttl: int | None = None) -> bool:
        """Write only if the key is still at `index` (None: only if it does not exist)."""
        if index is None:
            return self.create(key, value, ttl=ttl)
        with _converted(f"update {key}"):
            try:
                self.client.write(self._key(key), json.dumps(value), ttl=ttl, prevIndex=index)
                return True
            except (etcd.EtcdCompareFailed, etcd.EtcdKeyNotFound):
                return False

    def refresh(self, key: str, raw_value: Any, ttl: int) -> bool:
        """Renew a TTL key if it still holds `raw_value` (our lock)."""
        with _converted(f"refresh {key}"):
            try:
                self.client.write(
                    self._key(key), json.dumps(raw_value), ttl=ttl, prevValue=json.dumps(raw_value)
                )
                return True
            except (etcd.EtcdCompareFailed, etcd.EtcdKeyNotFound):
                return False

    def delete(self, key: str, recursive: bool = False, if_value: Any = None) -> bool:
        with _converted(f"delete {key}"):
            try:
                if if_value is not None:
                    self.client.delete(self._key(key), prevValue=json.dumps(if_value))
                else:
                    self.client.delete(self._key(key), recursive=recursive)
                return True
            except (etcd.EtcdKeyNotFound, etcd.EtcdCompareFailed):
                return False

    def children(self, key: str) -> dict[str, Any]:
        """The JSON values directly below a directory key, by their last path element."""
        with _converted(f"list {key}"):
            try:
                r = self.client.read(self._key(key), recursive=False)
            except etcd.EtcdKeyNotFound:
                return {}
        out: dict[str, Any] = {}
        for node in r._children:
            if node.get("dir"):
                out[node["key"].rsplit("/", 1)[-1]] = None
            else:
                out[node["key"].rsplit("/", 1)[-1]] = json.loads(node["value"])
        return out

    def wait(self, key: str, timeout: float) -> None:
        """Block until `key` changes or `timeout` passes, whichever comes first."""
        with _converted(f"watch {key}"):
            try:
                self.client.read(self._key(key), wait=True, timeout=timeout)
            except (etcd.EtcdWatchTimedOut, etcd.EtcdKeyNotFound):
                pass
            except etcd.EtcdConnectionFailed as exc:
                # python-etcd reports a watch timeout on some paths as a connection failure.
                if "timed out" not in str(exc).lower() and "Read timed out" not in str(exc):
                    raise

    def ping(self) -> None:
        self.get("_ping")
