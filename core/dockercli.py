"""Docker command lines, built in one place: pure functions that return argv lists (like Kamal's
command builders) and run nothing. Tests compare them exactly; the callers execute them.

The platform talks to the engine through the docker SDK where it can; a command line is used
where a process must stay attached to a terminal or a pipe (a one-off `run`, a build container
whose output streams) or where the CLI does the work (`docker import`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DOCKER = "docker"


@dataclass(frozen=True)
class Mount:
    source: str  # a host path
    target: str  # where the container sees it
    read_only: bool = False

    def arg(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class Run:
    """One `docker run`: what runs, what it is called, what it may use."""

    image: str
    command: Sequence[str] = ()
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[Mount] = ()
    remove: bool = True  # --rm: gone once it exits
    init: bool = False  # --init: a PID 1 that reaps zombies and forwards signals
    interactive: bool = False  # -i: stdin attached
    tty: bool = False  # -t
    pull_never: bool = False  # only local images (no registry is asked)
    memory: int | None = None  # bytes
    cpu_shares: int | None = None
    # Confinement (tenant code runs in most containers the platform starts).
    network: str | None = None  # --network NAME
    user: str | None = None  # --user UID[:GID]
    cap_drop: Sequence[str] = ()  # --cap-drop ALL, NET_RAW, ...
    cap_add: Sequence[str] = ()
    security_opt: Sequence[str] = ()  # no-new-privileges, ...
    pids_limit: int | None = None
    env_file: str | None = None  # --env-file PATH: values stay out of argv (and /proc/PID/cmdline)
    workdir: str | None = None


def _confinement(r: Run) -> list[str]:
    argv: list[str] = []
    if r.network:
        argv += ["--network", r.network]
    if r.user:
        argv += ["--user", r.user]
    for cap in r.cap_drop:
        argv += ["--cap-drop", cap]
    for cap in r.cap_add:
        argv += ["--cap-add", cap]
    for opt in r.security_opt:
        argv += ["--security-opt", opt]
    if r.pids_limit:
        argv += ["--pids-limit", str(r.pids_limit)]
    if r.workdir:
        argv += ["--workdir", r.workdir]
    return argv


def run(r: Run) -> list[str]:
    flags = [
        (r.remove, ["--rm"]),
        (r.init, ["--init"]),
        (r.pull_never, ["--pull", "never"]),
        (bool(r.name), ["--name", str(r.name)]),
    ]
    argv = [DOCKER, "run", *(arg for on, args in flags if on for arg in args)]
    for key, value in r.labels.items():
        argv += ["--label", f"{key}={value}"]
    flags = [
        (r.interactive, ["-i"]),
        (r.tty, ["-t"]),
        (bool(r.memory), ["--memory", f"{r.memory}b"]),
        (bool(r.cpu_shares), ["--cpu-shares", str(r.cpu_shares)]),
    ]
    argv += [arg for on, args in flags if on for arg in args]
    argv += _confinement(r)
    for mount in r.mounts:
        argv += ["-v", mount.arg()]
    if r.env_file:
        argv += ["--env-file", r.env_file]
    for key, value in r.env.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, r.image, *r.command]


def start_attached(name: str, *, interactive: bool) -> list[str]:
    """`docker start --attach` of a created container: its streams on ours, its exit status ours.
    (A container created through the API keeps its environment out of any command line.)"""
    return [DOCKER, "start", "--attach", *(["--interactive"] if interactive else []), name]


def remove_force(name: str) -> list[str]:
    """Stop and remove a container at once (an interrupted build's)."""
    return [DOCKER, "rm", "-f", name]


def import_(image: str, changes: Sequence[str] = ()) -> list[str]:
    """`docker import - IMAGE` of a tar on stdin; `changes` are Dockerfile instructions
    (`ENTRYPOINT [...]`, `LABEL k=v`) set on the image."""
    argv = [DOCKER, "import"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, "-", image]


def exec_(container: str, argv: Sequence[str], *, user: str, interactive: bool, tty: bool) -> list[str]:
    """`docker exec` of `argv` in a running container, its streams on ours (a backing service's
    client, dump or restore). Nothing secret belongs in `argv`: any local user can read it."""
    flags = [*(["-i"] if interactive else []), *(["-t"] if tty else [])]
    return [DOCKER, "exec", *flags, "--user", user, container, *argv]


def logs(container: str, *, follow: bool, tail: int | None) -> list[str]:
    """`docker logs` of a container with times, the last `tail` lines (all: None), `-f` to follow."""
    argv = [DOCKER, "logs", "--timestamps"]
    if tail is not None:
        argv += ["--tail", str(tail)]
    if follow:
        argv.append("--follow")
    return [*argv, container]


def network_create(
    name: str, options: Mapping[str, str], labels: Mapping[str, str], *, config_only: bool = False
) -> list[str]:
    """`docker network create` of a bridge network with driver options (`--opt K=V`) and labels;
    `config_only`: only settings, for a swarm-scoped network made `--config-from` it."""
    argv = [DOCKER, "network", "create", *(["--config-only"] if config_only else ["--driver", "bridge"])]
    for key, value in options.items():
        argv += ["--opt", f"{key}={value}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    return [*argv, name]


def network_rm(name: str) -> list[str]:
    return [DOCKER, "network", "rm", name]
