"""The appliance as a container the engine supervises, and how `deis up` replaces it and the other
components without a failed request or a half-done deploy.

    start_appliance  this checkout's image; a container of the same spec is left running. One of
                     another spec (older code) is handed over: renamed aside, the new one started
                     beside it (both listen on the SSH port with SO_REUSEPORT), and once the new one
                     listens the old one gets SIGTERM: it stops listening, finishes the sessions it
                     has (a push in flight completes in it) and exits. An appliance the previous
                     layout started as a host process (pidfile) is stopped first.
    stop_appliance   SIGTERM (running deploys finish), removed
    upgrading        while `up` replaces etcd, the registry or the router: the marker file makes new
                     SSH sessions wait (they say so), and deploys already running are waited for
                     first (their etcd locks), so none sees its state store or registry go away
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from appliance import components, processes, services
from builders import appliance_image
from core.errors import ServiceError
from core.output import Output
from core.proc import POLL_INTERVAL
from core.settings import Settings
from releaser.store import Store


def _client() -> Any:
    return services._client()


def _others(settings: Settings, keep: str) -> list[Any]:
    """This platform's appliance containers other than `keep` (one handed over, or left by an `up`
    that was interrupted during a handover)."""
    found = _client().containers.list(
        all=True,
        filters={
            "label": [
                f"{components.LABEL_PLATFORM}={settings.state_dir}",
                f"{components.LABEL_COMPONENT}=appliance",
            ]
        },
    )
    return [c for c in found if c.name != keep]


def _wait_ready(
    settings: Settings, name: str, instance: str, timeout: float = 60.0, restarting: bool = False
) -> float:
    """Until the appliance started as `instance` says it listens; seconds waited. A container that
    exits fails this at once, unless it was killed and the engine is `restarting` it."""
    began = time.monotonic()
    while True:
        with contextlib.suppress(OSError):
            if settings.appliance_ready.read_text().strip() == instance:
                return time.monotonic() - began
        st = services.component_state(name)
        gone = st is None or (st.state not in ("running", "restarting") and not restarting)
        if time.monotonic() - began >= timeout or gone:
            try:
                tail = _client().containers.get(name).logs(tail=3).decode("utf-8", "replace").strip()
            except Exception:  # gone already: say so rather than fail differently
                tail = "no log"
            last = tail.splitlines()[-1] if tail else "no log"
            raise ServiceError(
                f"the appliance did not come up within {timeout:g} s: {last} (docker logs {name})"
            )
        time.sleep(POLL_INTERVAL)


def start_appliance(
    settings: Settings, out: Output, ssh_service: processes.Service, image: str | None = None
) -> None:
    """This checkout's appliance (or `image`) running, handed over to if another runs."""
    if processes.running_pid(ssh_service, settings) is not None:
        out.detail("stopping the appliance process an earlier platform started")
        processes.stop(ssh_service, settings, out)
    image = image or appliance_image.ensure(out)
    kw = components.appliance_kwargs(settings, image)
    name = kw["name"]
    current = services.find_container(name)
    if current is not None:
        same = (current.labels or {}).get(services.SPEC_LABEL) == kw["labels"][services.SPEC_LABEL]
        if same and current.status in ("running", "restarting"):
            out.detail(f"{name} already running")
            _retire(settings, name, out)
            return
        if current.status == "running":
            out.detail(f"handing over from {name} (made from other code)")
            current.rename(f"{name}-old-{current.id[:12]}")
        else:
            current.remove(force=True)
    instance = uuid.uuid4().hex
    kw["environment"] = {**kw["environment"], components.INSTANCE_ENV: instance}
    services.run_container(kw)
    took = _wait_ready(settings, name, instance)
    out.detail(f"{name} ({image}) listens on port {settings.ssh_port} ({took:.1f} s)")
    _retire(settings, name, out)
    for old in appliance_image.prune(keep=image):
        out.detail(f"removed the unused image {old}")


def _retire(settings: Settings, keep: str, out: Output) -> None:
    for old in _others(settings, keep):
        out.detail(f"stopping {old.name}: it finishes its sessions first")
        old.stop(timeout=int(components.appliance_stop_timeout(settings)))
        old.remove(force=True)


def stop_appliance(settings: Settings, out: Output) -> bool:
    stopped = False
    for c in _others(settings, keep=""):
        out.step(f"Stopping {c.name} (running deploys finish first)")
        c.stop(timeout=int(components.appliance_stop_timeout(settings)))
        c.remove(force=True)
        stopped = True
    return stopped


def appliance_running(settings: Settings) -> bool:
    st = services.component_state(components.container_name(settings, "appliance"))
    return st is not None and st.state == "running"


# -- the upgrade marker -------------------------------------------------------------------------


def deploys_in_flight(store: Store) -> list[str]:
    """Apps whose deploy lock someone holds (a push, config:set, scale, ... running now)."""
    return sorted(store.children("locks"))


@contextlib.contextmanager
def upgrading(
    settings: Settings, out: Output, in_flight: Callable[[], list[str]], wait: float = 600.0
) -> Iterator[None]:
    """New SSH sessions wait while the body runs; deploys already running are waited for first
    (bounded: one still running after `wait` seconds fails the upgrade, nothing replaced)."""
    marker = settings.upgrade_marker
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{time.time():.0f}\n")
    try:
        deadline = time.monotonic() + wait
        told = False
        while busy := in_flight():
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"deploys of {', '.join(busy)} still running after {wait:g} s; run deis up again later"
                )
            if not told:
                out.detail(f"waiting for the deploys of {', '.join(busy)} to finish")
                told = True
            time.sleep(POLL_INTERVAL)
        yield
    finally:
        marker.unlink(missing_ok=True)
