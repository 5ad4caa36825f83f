"""What every SSH command shares: the registry, the Context, listings, app resolution, the lock.

Each handler gets a Context and its parsed arguments; it returns an exit code.

Handlers run in a worker thread (etcd and docker calls block); what they print streams to the
client as it is written. Listings print plain stable text when piped, a rich table on a pty, and
JSON with --json.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from appliance import pipeline
from appliance.platform import Platform
from core.errors import NotFound, UsageError
from core.names import check_app
from core.output import Output
from core.records import Release
from core.settings import Settings
from gitserver.cli import Registry
from releaser import apps, releases
from releaser.apps import App, User
from releaser.locks import AppLock
from releaser.store import Store
from scheduler.base import Stdio

registry = Registry()
command = registry.command


@dataclass
class Context:
    platform: Platform
    user: User
    stdout: IO[str]
    stdin: bytes = b""
    tty: bool = False
    json: bool = False
    no_wait: bool = False  # the client asked (SetEnv DEIS_NO_WAIT=1) to fail at once if the app is busy
    # Set by the server once the client's channel closed: long-running handlers (logs -f) poll it.
    closed: threading.Event = field(default_factory=threading.Event)
    # Calls `fn` with descriptors attached to the client's channel (stdin, stdout, stderr; a pty
    # if the client asked for one) and returns what it returns: `run` hands them to a one-off.
    # None outside an SSH session.
    attach: Callable[[Callable[[Stdio], int]], int] | None = None

    @property
    def out(self) -> Output:
        return Output(self.stdout)

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    @property
    def store(self) -> Store:
        return self.platform.store

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def show(self, data: Any, headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
        """One listing, three ways: --json, a rich table on a pty, plain columns when piped."""
        if self.json:
            self.print(json.dumps(data, indent=2, sort_keys=True))
        elif self.tty:
            table = Table(title=title, title_justify="left")
            for h in headers:
                table.add_column(h)
            for row in rows:
                table.add_row(*row)
            buf = io.StringIO()
            Console(file=buf, force_terminal=True, width=120).print(table)
            self.stdout.write(buf.getvalue())
            self.stdout.flush()
        else:
            if title:
                self.print(f"=== {title}")
            widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
            for row in rows:
                self.print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())

    def app(self, args: argparse.Namespace, candidate: str | None = None) -> App:
        """Resolve the app: --app, else a first argument naming an app, else the caller's only app."""
        name = getattr(args, "app", None)
        if name:
            return apps.authorize(self.store, self.user, check_app(name))
        if candidate and apps.get_app(self.store, candidate) is not None:
            return apps.authorize(self.store, self.user, candidate)
        mine = apps.apps_for(self.store, self.user)
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise UsageError("you have no apps yet: push one (git push) or run apps:create NAME")
        raise UsageError(f"which app? use --app APP (yours: {', '.join(a.name for a in mine)})")

    def new_release(self, app: str, summary: str, **changes: Any) -> Release:
        """Cut the next release of `app` with `changes` (build=, config=, limits=, tags=) over the
        current one and roll it out like a push. The caller holds the app's lock."""
        release = releases.prepare(self.store, app, by=self.user.name, summary=summary, **changes)
        return pipeline.roll_out(self.platform, release, self.out)

    def lock(self, app: str) -> AppLock:
        """The app's deploy lock, taken; a second caller sees who holds it and waits within a bound."""
        lock = AppLock(self.store, app, owner=self.user.name)
        lock.acquire(
            0 if self.no_wait else self.settings.lock_wait,
            on_wait=lambda h: self.out.step(
                f"waiting for {h.get('owner', 'someone')} to finish with {app}..."
            ),
        )
        if apps.get_app(self.store, app) is None:
            # Destroyed while we waited: acting now would leave orphans (a release, containers).
            lock.release()
            raise NotFound(f"app {app} was destroyed meanwhile")
        return lock


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
