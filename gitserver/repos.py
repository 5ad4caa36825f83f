"""Bare repositories, one per app, made with pygit2, each with the platform's pre-receive hook."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pygit2

from core.names import check_app
from core.settings import Settings


def hook_script(python: str) -> str:
    # A Python file run by git; the interpreter is the one the appliance runs under (its venv).
    return f"#!{python} -u\nfrom hooks.pre_receive import main\n\nraise SystemExit(main())\n"


def repo_path(settings: Settings, app: str) -> Path:
    return settings.repos_dir / f"{check_app(app)}.git"


def ensure_repo(settings: Settings, app: str) -> Path:
    """The app's bare repo, created if missing; the hook is (re)written when it differs."""
    path = repo_path(settings, app)
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pygit2.init_repository(str(path), bare=True)
    hook = path / "hooks" / "pre-receive"
    script = hook_script(sys.executable)
    if not hook.exists() or hook.read_text() != script:
        hook.parent.mkdir(exist_ok=True)
        tmp = hook.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, hook)
    return path


def fix_head(path: Path) -> None:
    """Point HEAD at the deploy branch that exists, so clones check it out (pygit2 starts at master)."""
    repo = pygit2.Repository(str(path))
    if repo.head_is_unborn:
        for branch in ("refs/heads/main", "refs/heads/master"):
            if branch in repo.references:
                repo.set_head(branch)
                return


def remove_repo(settings: Settings, app: str) -> None:
    shutil.rmtree(repo_path(settings, app), ignore_errors=True)
