"""Reading the pushed commit. While the pre-receive hook runs, the new objects are still in git's
quarantine: plain `git` run with the hook's environment (GIT_DIR, GIT_QUARANTINE_PATH,
GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES) sees them."""

from __future__ import annotations

import contextvars
import os
import subprocess
from pathlib import Path

from appliance.errors import BuildError, ValidationError
from appliance.names import check_process_type

# The hook's environment when the deploy runs in the appliance on the hook's behalf (hooks.service),
# set per deploy thread; otherwise this process's own environment is the hook's.
GIT_ENV: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("GIT_ENV", default=None)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(GIT_ENV.get() or os.environ)
    env.setdefault("GIT_DIR", str(repo))
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False)


def top_level_files(repo: Path, sha: str) -> set[str]:
    r = _git(repo, "ls-tree", "--name-only", "-z", sha)
    if r.returncode != 0:
        raise BuildError(f"cannot read commit {sha[:8]}: {r.stderr.decode(errors='replace').strip()}")
    return {n.decode("utf-8", "replace") for n in r.stdout.split(b"\0") if n}


def read_file(repo: Path, sha: str, path: str) -> str | None:
    r = _git(repo, "cat-file", "blob", f"{sha}:{path}")
    return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else None


def archive(repo: Path, sha: str) -> bytes:
    """The commit's tree as a tar stream: docker's build context as it is, no checkout needed."""
    r = _git(repo, "archive", "--format=tar", sha)
    if r.returncode != 0:
        raise BuildError(f"cannot export commit {sha[:8]}: {r.stderr.decode(errors='replace').strip()}")
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
