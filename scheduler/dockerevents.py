"""The engine's container events as the scheduler's (`Backend.events` of the docker backend): pure
parsing and the stream wrapper, apart from the backend so that module stays within its size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from scheduler.base import Event

LABEL_APP = "io.deis.app"


def parse_event(raw: dict[str, Any], id_label: str = "") -> Event | None:
    """One of the engine's container events as ours; None for those that change nothing we watch
    (create, kill, rename, exec_*, ...). Health changes come as `health_status: healthy`. The
    instance is the container, or with `id_label` what that label of the container names."""
    action = str(raw.get("Action") or raw.get("status") or "")
    kind = "health" if action.startswith("health_status") else action
    if kind not in ("start", "die", "destroy", "health"):
        return None
    actor = raw.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    app = str(attrs.get(LABEL_APP) or "")
    if not app:
        return None
    nanos = raw.get("timeNano")
    when = int(nanos) / 1e9 if nanos else float(raw.get("time") or 0)
    ident = attrs.get(id_label) if id_label else actor.get("ID") or raw.get("id") or ""
    if id_label and not ident:
        return None
    return Event(app=app, id=str(ident), action=kind, time=when)


class DockerEventStream:
    """The engine's event stream (one HTTP response held open); `close()` from another thread shuts
    its socket, which ends the iteration."""

    def __init__(self, raw: Any, id_label: str = "") -> None:
        self._raw = raw
        self._id_label = id_label  # the label that names the instance (a swarm task's service id)

    def __iter__(self) -> Iterator[Event]:
        try:
            for item in self._raw:
                event = parse_event(item, self._id_label) if isinstance(item, dict) else None
                if event is not None:
                    yield event
        except Exception:  # a closed stream or a daemon that went away: the iteration ends
            return

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing an already broken socket
            self._raw.close()
