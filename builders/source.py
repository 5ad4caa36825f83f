"""Reading the pushed commit. While the pre-receive hook runs, the new objects are still in git's
quarantine: plain `git` run with the hook's environment (GIT_DIR, GIT_QUARANTINE_PATH,
GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES, carried by `Push.git_env`) sees them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BuildError, ValidationError
from core.names import check_process_type
from core.records import Push


@dataclass(frozen=True)
class Source:
    """One commit of an app's bare repository, read with git."""

    repo: Path
    sha: str
    git_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, push: Push) -> Source:
        return cls(push.repo, push.sha, push.git_env)

    def _git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = dict(self.git_env or os.environ)
        env.setdefault("GIT_DIR", str(self.repo))
        return subprocess.run(["git", *args], cwd=self.repo, env=env, capture_output=True, check=False)

    def top_level_files(self) -> set[str]:
        r = self._git("ls-tree", "--name-only", "-z", self.sha)
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip()
            raise BuildError(f"cannot read commit {self.sha[:8]}: {why}")
        return {n.decode("utf-8", "replace") for n in r.stdout.split(b"\0") if n}

    def read_file(self, path: str) -> str | None:
        r = self._git("cat-file", "blob", f"{self.sha}:{path}")
        return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else None

    def archive(self) -> bytes:
        """The commit's tree as a tar stream: docker's build context as it is, no checkout needed."""
        r = self._git("archive", "--format=tar", self.sha)
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip()
            raise BuildError(f"cannot export commit {self.sha[:8]}: {why}")
        return r.stdout


def parse_procfile(text: str) -> dict[str, str]:
    """`type: command` lines, as Heroku reads them; comments and blank lines skipped."""
    procs: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ptype, sep, command = line.partition(":")
        if not sep or not command.strip():
            raise ValidationError(f"Procfile line {n} is not 'type: command': {raw!r}")
        try:
            check_process_type(ptype.strip())
        except ValidationError as exc:
            raise ValidationError(f"Procfile line {n}: {exc}") from exc
        procs[ptype.strip()] = command.strip()
    return procs
