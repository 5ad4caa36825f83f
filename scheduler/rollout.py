"""Start new, check health, (the router switches), retire old: the rollout every deploy goes through.

Pure planning (`plan`) is separate from the calls that execute it, so tests compare plans exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core.errors import DeisError, DeployError
from core.names import ONE_OFF_TYPES, ROUTED_TYPES, ContainerName
from scheduler.base import Backend, Instance, ProcessSpec
from scheduler.health import HealthCheck, wait_healthy


@dataclass(frozen=True)
class Deployment:
    """Everything the scheduler needs to run one release of an app."""

    app: str
    version: int
    image: str
    procfile: dict[str, str]  # type -> command; empty: the image's own CMD as `cmd`
    port: int
    config: dict[str, str]
    formation: dict[str, int]
    health: HealthCheck = field(default_factory=HealthCheck)
    memory: dict[str, int] = field(default_factory=dict)  # type -> memory limit in bytes
    default_memory: int | None = None  # bytes, for types without their own limit
    pids_limit: int | None = None
    cpu: dict[str, int] = field(default_factory=dict)  # type -> cpu shares
    runner: bool = False  # the image's entry point is the slug runner: a type starts as `start TYPE`
    release_command: str = ""  # the Procfile's `release:`, run once before the rollout (release_phase)
    networks: tuple[str, ...] = ()  # the linked backing services' networks (ProcessSpec.networks)
    # type -> (host directory, path inside) of the app's volumes (ProcessSpec.mounts)
    mounts: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    placement: tuple[tuple[str, str], ...] = ()  # the release's tags: node labels (ProcessSpec.placement)


def command(d: Deployment, ptype: str) -> list[str] | None:
    """How a process type starts: the image's CMD (`cmd`), the runner's `start TYPE`, or the shell."""
    if ptype == "cmd":
        return None
    if d.runner:
        return ["start", ptype]
    return ["/bin/sh", "-c", d.procfile[ptype] if ptype != "release" else d.release_command]


def environment(d: Deployment, ptype: str, num: int) -> dict[str, str]:
    return {
        **d.config,
        "PORT": str(d.port),
        "DEIS_APP": d.app,
        "DEIS_RELEASE": f"v{d.version}",
        "DYNO": f"{ptype}.{num}",
    }


def plan(d: Deployment) -> list[ProcessSpec]:
    specs = []
    for ptype, count in sorted(d.formation.items()):
        if (ptype == "cmd" and d.procfile) or ptype == "release":
            continue  # `release` runs once per release (release_phase), never as a scaled process
        if ptype != "cmd" and ptype not in d.procfile:
            continue  # scaled type that this build no longer declares
        specs += [spec(d, ptype, num) for num in range(1, count + 1)]
    return specs


def spec(d: Deployment, ptype: str, num: int, argv: list[str] | None = None) -> ProcessSpec:
    """One container of `d`: process type `ptype` (started as `command(d, ptype)` unless `argv` is given)."""
    return ProcessSpec(
        name=ContainerName(d.app, d.version, ptype, num),
        image=d.image,
        command=argv if argv is not None else command(d, ptype),
        env=environment(d, ptype, num),
        port=d.port if ptype in ROUTED_TYPES else None,
        memory=d.memory.get(ptype, d.default_memory),
        cpu_shares=d.cpu.get(ptype),
        pids_limit=d.pids_limit,
        networks=d.networks,
        mounts=d.mounts.get(ptype, ()),
        placement=d.placement,
    )


def launch(backend: Backend, d: Deployment, note: Callable[[str], None]) -> list[Instance]:
    """Start every container of `d` and wait until the routed ones are healthy.

    On any failure every container started here is removed again, so a failed deploy leaves
    nothing behind, and the error goes up.
    """
    for leftover in backend.instances(d.app):
        if leftover.name.version == d.version:  # from an attempt at this release that died mid-way
            backend.stop(leftover.id, 0)
    return launch_specs(backend, d, plan(d), note)


def launch_specs(
    backend: Backend, d: Deployment, specs: list[ProcessSpec], note: Callable[[str], None]
) -> list[Instance]:
    """`launch` for some instances of `d` only (scale up, restart). On any failure (a hang-up too)
    every instance started here is stopped again, by id: an instance of the same name that ran
    before (a restart's old one) keeps running."""
    started: list[Instance] = []
    guard = threading.Lock()

    def start(spec: ProcessSpec) -> Instance:
        inst = backend.start(spec)
        with guard:
            started.append(inst)
        return inst

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(specs)))) as pool:
            ordered = list(pool.map(start, specs))
            note(f"started {', '.join(str(i.name) for i in ordered) or 'nothing (scaled to zero)'}")
            routed = [i for i in ordered if i.name.type in ROUTED_TYPES]
            if routed:
                list(pool.map(lambda i: wait_healthy(backend, i, d.health), routed))
                note(f"healthy: {d.health.describe()}")
    except BaseException as exc:
        stop_all(backend, [i.id for i in started], 0)
        if isinstance(exc, DeisError):
            raise
        if isinstance(exc, Exception):
            raise DeployError(f"could not start {d.app} v{d.version}: {exc}") from exc
        raise
    return ordered


def endpoints(instances: list[Instance]) -> list[str]:
    return sorted(i.endpoint for i in instances if i.name.type in ROUTED_TYPES and i.running and i.endpoint)


def retire(backend: Backend, app: str, keep_version: int, grace: float) -> list[str]:
    """Stop and remove every container of `app` that is not of release `keep_version`.

    One-off containers (`run`, the release phase) are left alone: a `run` session outlives deploys."""
    old = [
        i
        for i in backend.instances(app)
        if i.name.version != keep_version and i.name.type not in ONE_OFF_TYPES
    ]
    stop_all(backend, [i.id for i in old], grace)
    return [str(i.name) for i in old]


# -- scale: the formation of the running release changes, no new release (as in Deis v1) ----------
@dataclass(frozen=True)
class ScalePlan:
    start: list[ContainerName]  # the next free nums of each type
    stop: list[ContainerName]  # highest nums first

    @property
    def routed_change(self) -> bool:
        return any(n.type in ROUTED_TYPES for n in self.start + self.stop)


def scale_plan(
    app: str, version: int, types: list[str], running: list[ContainerName], formation: dict[str, int]
) -> ScalePlan:
    """What to start and stop so that release `version` runs `formation` (pure).

    `types` are the release's process types; containers of other types (one-off `run`s) and of other
    releases are left alone. A type absent from `formation` is scaled to zero."""
    mine = [n for n in running if n.version == version and n.type in types]
    start: list[ContainerName] = []
    stop: list[ContainerName] = []
    for ptype in sorted(types):
        nums = sorted(n.num for n in mine if n.type == ptype)
        want = formation.get(ptype, 0)
        if len(nums) > want:
            stop += [ContainerName(app, version, ptype, k) for k in reversed(nums)][: len(nums) - want]
        free = (k for k in range(1, want + len(nums) + 1) if k not in nums)
        start += [ContainerName(app, version, ptype, next(free)) for _ in range(want - len(nums))]
    return ScalePlan(start, stop)


def stop_all(backend: Backend, refs: list[str], grace: float) -> None:
    """Stop instances (ids or names) side by side."""
    if refs:
        with ThreadPoolExecutor(max_workers=min(8, len(refs))) as pool:
            list(pool.map(lambda r: backend.stop(r, grace), refs))
