"""The small interface every scheduler backend implements (like httpx's transports).

A backend runs process instances of apps somewhere (a local engine, a swarm, a fleet cluster) and
reports on them; it knows nothing about releases, routing or health policy. `scheduler.rollout`
drives any backend through a deploy, `scheduler.health` decides what healthy means.

    start(spec)                 run one instance of a process
    stop(ref, grace)            stop it (TERM, KILL after `grace`) and remove it (`removing` hears of it
                                between the two)
    instances(app)              what runs (or ran), with state and the endpoint the router reaches
    probe(instance)             whether it accepts TCP connections on its $PORT
    logs(ref, tail, follow)     its output, with times
    run_attached(spec, stdio)   run a one-off instance with its stdin/stdout on file descriptors
    events()                    what happens to instances from now on (started, exited, removed, health)

Two instances may share a name for a moment: `start` of a name that runs already starts the new
instance beside the old one (a zero-downtime restart), and `instances` lists both until one is
stopped by its id. Times are UNIX seconds (floats), memory in bytes, CPU in relative shares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

from core.names import ContainerName


@dataclass(frozen=True)
class ProcessSpec:
    """One instance of a process type of one release, as the scheduler runs it."""

    name: ContainerName
    image: str
    command: list[str] | None  # None: the image's own command
    env: dict[str, str]
    port: int | None = None  # the app's $PORT; an instance with one gets an endpoint for the router
    memory: int | None = None  # bytes
    cpu_shares: int | None = None  # relative weight (1024 is an unlimited default share)
    pids_limit: int | None = None  # processes (threads too) it may run at once
    # Extra networks it joins before it starts (those of the backing services linked to the app);
    # backends without networks of their own ignore them.
    networks: tuple[str, ...] = ()
    # (host directory, path inside) pairs bound read-write: the app's volumes (storage:mount);
    # every instance of a type shares them, so old and new share them during a rollout.
    mounts: tuple[tuple[str, str], ...] = ()
    # (key, value) node labels it must run on (the app's `tags:set`); single-host backends ignore them.
    placement: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Instance:
    name: ContainerName
    id: str  # the backend's own id: unique even while two instances share a name
    state: str  # running, restarting, created, exited, dead
    endpoint: str | None  # "HOST:PORT" where the router reaches it
    port: int | None  # the app's $PORT inside
    started: float = 0.0  # UNIX time it last started; 0: never
    restarts: int = 0  # how often the backend restarted it after it exited
    node: str = ""  # where it runs, on backends with several

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class LogLine:
    time: float  # UNIX time the backend received the line
    text: str  # without its newline


class LogStream(Protocol):
    """Lines of one instance's output, oldest first; `close()` (from any thread) ends the iteration."""

    def __iter__(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Event:
    """Something happened to one of the platform's instances: whoever keeps the apps right looks at
    that app again (the event says what to look at, not what is now true)."""

    app: str
    id: str  # the Instance.id it happened to
    action: str  # one of EVENT_ACTIONS
    time: float  # UNIX time the backend saw it


# start: it (re)started; die: its process exited (a crash or a stop); destroy: it was removed;
# health: the backend's own health check of it changed.
EVENT_ACTIONS = ("start", "die", "destroy", "health")


class EventStream(Protocol):
    """Events, as they happen; `close()` (from any thread) ends the iteration. The iteration also
    ends when the backend's connection is lost: events may then have been missed."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Usage:
    """What a running instance uses now."""

    cpu: float  # cores (0.5: half of one core), averaged over the backend's last sample
    memory: int  # bytes in use, the page cache it could give back not counted
    memory_limit: int | None = None


@dataclass(frozen=True)
class Stdio:
    """Where a one-off instance's standard streams go: open file descriptors the caller owns."""

    stdin: int | None  # None: no input (end of file at once)
    stdout: int
    stderr: int
    tty: bool = False  # stdin/stdout are a terminal: the instance gets one of the same size


class Backend(ABC):
    """Where instances run. Every method blocks and is safe to call from several threads."""

    name: ClassVar[str]
    # Called with an instance's id once it has stopped and before it is removed (by `stop`, or to
    # free a name for `start`): whoever keeps instances' output reads the rest of it then.
    removing: Callable[[str], None] | None = None

    @abstractmethod
    def start(self, spec: ProcessSpec) -> Instance:
        """Run one instance of `spec` and return once the backend reports it started. If an
        instance of that name runs already, the new one starts beside it."""

    @abstractmethod
    def stop(self, ref: str, grace: float) -> None:
        """Stop an instance (SIGTERM, SIGKILL after `grace` seconds) and remove it. `ref` is an
        Instance.id, or a name: then every instance of that name. A missing one is not an error."""

    @abstractmethod
    def instances(self, app: str | None = None) -> list[Instance]:
        """This platform's instances (of one app), sorted by name, then by start time."""

    @abstractmethod
    def probe(self, instance: Instance) -> bool:
        """Whether something in the instance accepts TCP connections on its $PORT."""

    @abstractmethod
    def logs(
        self, ref: str, *, tail: int | None = None, follow: bool = False, since: float | None = None
    ) -> LogStream:
        """An instance's output with times: the last `tail` lines (None: all) of those written at or
        after `since`, then, with `follow`, new lines as they come until the instance stops or the
        stream is closed. A missing instance gives an empty stream."""

    @abstractmethod
    def run_attached(self, spec: ProcessSpec, stdio: Stdio) -> int:
        """Run `spec` once with its standard streams on `stdio`; block until it exits, then remove it.
        Returns its exit status (128+N if a signal N ended it). Stopping it by name from another
        thread (a hang-up) makes this return."""

    @abstractmethod
    def events(self) -> EventStream:
        """This platform's instance events from now on: every event that happens after `events()`
        returns is in the stream, in order (one stream per caller; close it when done)."""

    @abstractmethod
    def usage(self, instances: list[Instance]) -> dict[str, Usage]:
        """CPU and memory of each running instance of `instances`, by id (a gone one is left out)."""

    def check(self) -> None:  # noqa: B027 - most backends can always run: nothing to check
        """Raise a DeisError saying why this backend cannot run apps here (before switching to it)."""

    # -- conveniences, in terms of the above; backends may answer them faster --------------------
    def inspect(self, ref: str) -> Instance | None:
        """One instance by id, or the newest of a name; None if there is none."""
        app = ContainerName.parse(ref)
        found = [i for i in self.instances(app.app if app else None) if ref in (i.id, str(i.name))]
        return found[-1] if found else None

    def log_tail(self, ref: str, lines: int = 20) -> str:
        """The last lines an instance wrote, as one text (for error messages)."""
        stream = self.logs(ref, tail=lines)
        try:
            return "".join(f"{line.text}\n" for line in stream)
        finally:
            stream.close()
