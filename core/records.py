"""Plain records every floor passes around: a build, a release, a push. No behaviour beyond
their own fields: the rooms that make and keep them are builders/, releaser/ and hooks/.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Build:
    image: str  # registry/app:git-sha8, pullable by every node
    kind: str  # "dockerfile" | "buildpack" | "image"
    sha: str | None = None  # the git commit it was built from
    procfile: dict[str, str] = field(default_factory=dict)  # type -> command; empty: the image's own CMD
    port: int = 5000  # what the app listens on ($PORT)
    created: float = 0.0
    by: str = ""
    # app.json `healthchecks` (Dokku's format), by process type
    healthchecks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    release: str = ""  # the Procfile's `release:` command, run once per release before the rollout
    runner: bool = False  # the image's entry point is the slug runner: types start as `start TYPE`
    slug_size: int = 0  # bytes of a buildpack build's compressed slug

    @property
    def process_types(self) -> list[str]:
        """What can be scaled: the Procfile's types, or `cmd` for an image's own command."""
        return sorted(self.procfile) if self.procfile else ["cmd"]

    def default_formation(self) -> dict[str, int]:
        return {"web": 1} if "web" in self.procfile else ({} if self.procfile else {"cmd": 1})


@dataclass(frozen=True)
class Release:
    app: str
    version: int
    build: Build | None
    config: dict[str, str]
    summary: str
    by: str
    created: float
    # {"memory": {type: "512m"}, "cpu": {type: shares}}; missing kinds and types: no limit.
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def memory(self) -> dict[str, str]:
        return {t: str(v) for t, v in (self.limits.get("memory") or {}).items()}

    @property
    def cpu(self) -> dict[str, int]:
        return {t: int(v) for t, v in (self.limits.get("cpu") or {}).items()}

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("app")
        return d

    @classmethod
    def from_json(cls, app: str, d: dict[str, object]) -> Release:
        b = d.get("build")
        build = Build(**b) if isinstance(b, dict) else None
        return cls(
            app=app,
            version=int(d["version"]),  # type: ignore[call-overload]
            build=build,
            config=dict(d.get("config") or {}),  # type: ignore[call-overload]
            summary=str(d.get("summary", "")),
            by=str(d.get("by", "")),
            created=float(d.get("created", 0)),  # type: ignore[arg-type]
            limits={k: dict(v) for k, v in dict(d.get("limits") or {}).items()},  # type: ignore[call-overload]
            tags=dict(d.get("tags") or {}),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class Push:
    """One `git push` to deploy: the app's bare repo, the pushed commit, and git's environment
    while the pre-receive hook runs (the new objects are still in quarantine: only git run with
    that environment sees them)."""

    app: str
    repo: Path
    sha: str
    user: str
    git_env: dict[str, str] = field(default_factory=dict)
