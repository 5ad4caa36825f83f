"""The small interface every scheduler backend implements (like httpx's transports).

A backend starts, lists, stops containers and reads their logs; it knows nothing about releases,
routing or health policy. `scheduler.rollout` drives any backend through a deploy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from appliance.names import ContainerName


@dataclass(frozen=True)
class ContainerSpec:
    name: ContainerName
    image: str
    command: list[str] | None  # None: the image's own CMD
    env: dict[str, str]
    port: int | None = None  # the app's $PORT, published on 127.0.0.1 when routed
    labels: dict[str, str] = field(default_factory=dict)
    memory: str | None = None  # docker's syntax: 512m, 1g
    cpu_shares: int | None = None


@dataclass(frozen=True)
class Instance:
    name: ContainerName
    id: str
    state: str  # running, exited, created, restarting, dead
    endpoint: str | None  # "127.0.0.1:PORT" where the router reaches it
    port: int | None  # the app's $PORT inside the container
    started: str = ""  # ISO time the container last started
    restarts: int = 0  # how often the engine restarted it after it exited

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class LogLine:
    time: float  # UNIX time the engine received the line
    text: str  # without its newline


class LogStream(Protocol):
    """Lines of one container's output, oldest first; `close()` (from any thread) ends the iteration."""

    def __iter__(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...


class Backend(ABC):
    """Where containers run. Every method is blocking and safe to call from several threads."""

    @abstractmethod
    def start(self, spec: ContainerSpec) -> Instance:
        """Create and start a container; returns once the engine reports it started."""

    @abstractmethod
    def stop(self, name: str, grace: float) -> None:
        """SIGTERM, SIGKILL after `grace` seconds, then remove. A missing container is not an error."""

    @abstractmethod
    def instances(self, app: str | None = None) -> list[Instance]:
        """This platform's containers (of one app), sorted by name."""

    @abstractmethod
    def strays(self, app: str | None = None) -> list[tuple[str, str]]:
        """(app, name) of this platform's containers whose names are not `APP_vN.TYPE.NUM`: a
        restart's `NAME.retiring` container, left behind when the appliance died mid-restart."""

    @abstractmethod
    def inspect(self, name: str) -> Instance | None:
        """One container's current state, or None if it does not exist."""

    @abstractmethod
    def listening(self, instance: Instance) -> bool:
        """Whether something in the container accepts TCP connections on its $PORT."""

    @abstractmethod
    def logs(self, name: str, tail: int = 20) -> str:
        """The last lines the container wrote (stdout and stderr)."""

    @abstractmethod
    def run_argv(self, spec: ContainerSpec, *, interactive: bool = False, tty: bool = False) -> list[str]:
        """The command line that runs `spec` once, attached, removed when it exits.

        Its exit status is the container command's: `run` and a release phase execute it.
        """

    @abstractmethod
    def log_stream(
        self, name: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> LogStream:
        """The container's output with times: the last `tail` lines (None: all) of those written at
        or after `since` (UNIX time), then, with `follow`, new lines as they come until the container
        stops or the stream is closed. A missing container gives an empty stream."""

    @abstractmethod
    def rename(self, name: str, new_name: str) -> None:
        """Give a container another name; it keeps running and keeps its host port.

        `ps:restart` moves a routed container aside this way, so its replacement can take the fixed
        name while the router still reaches the old one. Names that are not `APP_vN.TYPE.NUM` are not
        listed by `instances`."""
