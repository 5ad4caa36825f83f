"""Reading the pushed commit. While the pre-receive hook runs, the new objects are still in git's
quarantine: plain `git` run with the hook's environment (GIT_DIR, GIT_QUARANTINE_PATH,
GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES, carried by `Push.git_env`) sees them.

Everything in the commit is the pusher's, and a few MB of pack can unpack to gigabytes: the tree's
size is checked before anything is exported (`check_size`), the export streams to disk (`extract`,
`archive_to`: nothing whole in memory), and the small metadata files the platform reads itself
(app.json, Procfile, .buildpacks) are read only up to METADATA_LIMIT bytes (`read_file`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from core.errors import BuildError, ValidationError
from core.names import check_process_type
from core.records import Push

METADATA_LIMIT = 1 << 20  # app.json, Procfile, .buildpacks


def human(size: int) -> str:
    """1073741824 -> "1.0 GiB"."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@dataclass(frozen=True)
class Source:
    """One commit of an app's bare repository, read with git."""

    repo: Path
    sha: str
    git_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, push: Push) -> Source:
        return cls(push.repo, push.sha, push.git_env)

    def _env(self) -> dict[str, str]:
        env = dict(self.git_env or os.environ)
        env.setdefault("GIT_DIR", str(self.repo))
        return env

    def _git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["git", *args], cwd=self.repo, env=self._env(), capture_output=True, check=False
        )

    def _popen(self, *args: str, stdout: int | BinaryIO = subprocess.PIPE) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["git", *args], cwd=self.repo, env=self._env(), stdout=stdout, stderr=subprocess.PIPE
        )

    def tree_size(self, stop_above: int | None = None) -> int:
        """The bytes of every file in the commit, unpacked (read as a stream of `ls-tree` lines;
        once past `stop_above` it stops counting and returns what it has)."""
        proc = self._popen("ls-tree", "-r", "-l", "-z", "--full-tree", self.sha)
        assert proc.stdout is not None
        total, buf = 0, b""
        try:
            while chunk := proc.stdout.read(65536):
                buf += chunk
                *entries, buf = buf.split(b"\0")
                for entry in entries:
                    # "MODE TYPE OID SIZE\tPATH"; submodules (commits) have "-" as their size
                    size = entry.split(b"\t", 1)[0].split()[-1]
                    total += int(size) if size.isdigit() else 0
                if stop_above is not None and total > stop_above:
                    return total
        finally:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode not in (0, -9):
            raise BuildError(f"cannot read commit {self.sha[:8]}: {err.decode(errors='replace').strip()}")
        return total

    def check_size(self, limit: int) -> None:
        """BuildError (one line) if the commit's files come to more than `limit` bytes unpacked."""
        total = self.tree_size(stop_above=limit)
        if total > limit:
            raise BuildError(
                f"the pushed commit {self.sha[:8]} is too large: over {human(limit)} unpacked"
                f" (at least {human(total)}); the limit is the operator's DEIS_MAX_PUSH_BYTES"
            )

    def top_level_files(self) -> set[str]:
        r = self._git("ls-tree", "--name-only", "-z", self.sha)
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip()
            raise BuildError(f"cannot read commit {self.sha[:8]}: {why}")
        return {n.decode("utf-8", "replace") for n in r.stdout.split(b"\0") if n}

    def read_file(self, path: str, limit: int = METADATA_LIMIT) -> str | None:
        """A small file of the commit as text (None if it has none); BuildError if it is a
        directory, or larger than `limit` bytes (it is never read whole)."""
        spec = f"{self.sha}:{path}"
        kind = self._git("cat-file", "-t", spec)
        if kind.returncode != 0:
            return None
        if kind.stdout.strip() != b"blob":
            raise BuildError(f"{path} must be a file")
        size = self._git("cat-file", "-s", spec).stdout.strip()
        if not size.isdigit() or int(size) > limit:
            raise BuildError(f"{path} is too large: at most {human(limit)}")
        proc = self._popen("cat-file", "blob", spec)
        assert proc.stdout is not None
        data = proc.stdout.read(limit + 1)
        proc.kill()
        proc.communicate()
        if len(data) > limit:
            raise BuildError(f"{path} is too large: at most {human(limit)}")
        return data.decode("utf-8", "replace")

    def archive_to(self, out: BinaryIO) -> None:
        """The commit's tree as a tar stream, written to `out` (a file) by git itself."""
        proc = self._popen("archive", "--format=tar", self.sha, stdout=out)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise BuildError(f"cannot export commit {self.sha[:8]}: {err.decode(errors='replace').strip()}")

    def extract(self, dest: Path) -> None:
        """The commit's files under `dest` (made if missing), streamed: `git archive | tar -x`."""
        dest.mkdir(parents=True, exist_ok=True)
        tar_bin = shutil.which("tar") or "tar"
        git = self._popen("archive", "--format=tar", self.sha)
        assert git.stdout is not None
        tar = subprocess.run(
            [tar_bin, "-x", "--no-same-owner", "--no-same-permissions", "-C", str(dest)],
            stdin=git.stdout,
            capture_output=True,
            check=False,
        )
        git.stdout.close()
        _, err = git.communicate()
        if git.returncode != 0 or tar.returncode != 0:
            why = (err or tar.stderr).decode(errors="replace").strip()
            raise BuildError(f"cannot export commit {self.sha[:8]}: {why}")

    def archive(self) -> bytes:
        """The commit's tree as a tar stream, in memory: only for commits that passed
        `check_size`; prefer `extract` or `archive_to`, which stream to disk."""
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
