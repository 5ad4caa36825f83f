"""The wired-up parts of one platform (one state dir): settings, the etcd store, the scheduler
backend and the router. Built once per process (`Platform.from_settings`) and handed down: the SSH
commands, the hook service and the reconciler share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import scheduler
from appliance.drains import Forwarder
from core.settings import Settings
from releaser import platform as platform_config
from releaser.logstore import LogStore
from releaser.store import Store
from routerconf import Router
from routerconf.site import Site
from scheduler.base import Backend


class RouterPort(Protocol):
    """What the composition needs of the router (routerconf.Router; a recorder in unit tests)."""

    def publish(self, app: str, endpoints: list[str], site: Site | None = None) -> None: ...

    def remove(self, app: str) -> None: ...


class Platform:
    def __init__(
        self, settings: Settings, store: Store, router: RouterPort, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self._backend = backend
        self._logs: LogStore | None = None
        self._drains: Forwarder | None = None
        self._lock = threading.Lock()
        # Set to make the certs:auto loop (appliance.acme) look at once (a domain was added).
        self.acme_wake = threading.Event()
        # Called after switch_backend (the reconciler then follows the new backend's events).
        self.backend_changed: list[Callable[[], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> Platform:
        return cls(settings, store or Store.of(settings), Router(settings))

    @property
    def backend(self) -> Backend:
        """The scheduler backend the platform's configuration names, made on first use (etcd may
        still be coming up when the appliance starts)."""
        with self._lock:
            if self._backend is None:
                self._backend = self.make_backend(platform_config.scheduler(self.store))
            return self._backend

    def make_backend(self, name: str) -> Backend:
        auth = self.settings.registry_auth
        return scheduler.create(
            name, platform=str(self.settings.state_dir), registry_auth=lambda: auth().auth_config()
        )

    def switch_backend(self, backend: Backend) -> None:
        """Use `backend` from now on (scheduler:set); whoever follows the old one's events is told."""
        with self._lock:
            self._backend = backend
            listeners = list(self.backend_changed)
        for listener in listeners:
            listener()

    @property
    def logs(self) -> LogStore:
        """The apps' log store (one per process: it has the only writer)."""
        with self._lock:
            if self._logs is None:
                s = self.settings
                self._logs = LogStore(s.logs_dir, max_lines=s.log_lines, max_bytes=s.log_bytes)
            return self._logs

    @property
    def drains(self) -> Forwarder:
        """What forwards the apps' lines to their drains (fed by the log store's writer)."""
        logs = self.logs
        with self._lock:
            if self._drains is None:
                self._drains = Forwarder(self.settings, self.store, logs)
            return self._drains
