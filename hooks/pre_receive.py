"""The git pre-receive hook: read `old new ref` lines, deploy the deploy branch, map errors to exit codes.

git runs it inside `git receive-pack`, which the SSH server started for an authorized user while
holding the app's deploy lock (so the ref update that follows a successful hook is covered too).
The server passes who and what through the environment: DEIS_APP, DEIS_USER, DEIS_STATE_DIR, and
DEIS_DEPLOY_SOCKET. Everything printed here reaches the pusher live as `remote:` lines. Exit 0
accepts the push; anything else rejects it and leaves every ref unchanged.

`main()` hands the work to the running appliance over DEIS_DEPLOY_SOCKET (hooks.service), whose
imports, docker and etcd connections are already warm: a fresh interpreter importing the pipeline
costs about 0.4 s per push. Without the socket it runs `run()` in this process. At module level
this file imports only the standard library and core.output, for that reason.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from core.output import Output

if TYPE_CHECKING:
    from appliance.platform import Platform

ZERO = "0" * 40
DEPLOY_REFS = ("refs/heads/master", "refs/heads/main")


def parse_updates(text: str) -> list[tuple[str, str, str]]:
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    return updates


def deploy_target(updates: list[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The update that deploys: master if pushed, else main."""
    for ref in DEPLOY_REFS:
        for update in updates:
            if update[2] == ref:
                return update
    return None


def run(stdin_text: str, env: dict[str, str], out: Output, platform: Platform | None = None) -> int:
    """Decide what the push does and do it; `env` is the hook's environment. `platform` is the
    appliance's (hooks.service); without it one is made here."""
    app, user = env["DEIS_APP"], env["DEIS_USER"]
    updates = parse_updates(stdin_text)
    target = deploy_target(updates)
    for _, new, ref in updates:
        if target is None or ref != target[2]:
            what = "deleted" if new == ZERO else "stored"
            branch = ref.removeprefix("refs/heads/")
            out.detail(f"{branch} {what} (not deployed: only master or main deploys)")
    if target is None:
        return 0
    _, new, ref = target
    if new == ZERO:
        out.error(f"deleting {ref.removeprefix('refs/heads/')} is not allowed: it is what {app} runs")
        return 1
    from appliance import pipeline
    from appliance.platform import Platform
    from core.errors import DeisError
    from core.records import Push
    from core.settings import Settings

    push = Push(app=app, repo=Path(env.get("GIT_DIR", ".")).resolve(), sha=new, user=user, git_env=env)
    try:
        if platform is None:
            platform = Platform.from_settings(Settings.load(env.get("DEIS_STATE_DIR")))
        pipeline.deploy(platform, push, out)
    except DeisError as exc:
        out.error(exc.message)
        out.error("push rejected: nothing changed, the previous release keeps serving")
        return 1
    except KeyboardInterrupt:
        out.error("deploy interrupted")
        return 1
    except Exception as exc:  # a bug, or a third-party error not converted: still one clear line
        logging.getLogger("deis.hooks").exception("deploy of %s failed", app)
        out.error(f"internal error: {type(exc).__name__}: {exc}; push rejected")
        return 1
    return 0


def _terminate(signum: int, frame: object) -> None:
    # The SSH server sends SIGTERM when the pusher hangs up: unwind, so the rollout removes what it started.
    raise KeyboardInterrupt


def hook_env() -> dict[str, str]:
    """This hook's environment, with GIT_DIR absolute so another process can use it."""
    env = dict(os.environ)
    env["GIT_DIR"] = os.path.abspath(env.get("GIT_DIR", "."))
    return env


def delegate(path: str, stdin_text: str, stdout: IO[str]) -> int:
    """Have the appliance at `path` run the hook; relay its output. OSError if it is not there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(json.dumps({"stdin": stdin_text, "env": hook_env()}).encode() + b"\n")
        with sock.makefile("r", encoding="utf-8") as replies:
            for line in replies:
                msg = json.loads(line)
                if "exit" in msg:
                    return int(msg["exit"])
                stdout.write(msg["out"])
                stdout.flush()
    Output(stdout).error("the appliance went away during the deploy: push rejected, nothing changed")
    return 1


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    stdin_text = sys.stdin.read()
    path = os.environ.get("DEIS_DEPLOY_SOCKET")
    if path:
        try:
            return delegate(path, stdin_text, sys.stdout)
        except OSError:
            pass  # no appliance listening (an old one, or a test): do it here
        except KeyboardInterrupt:
            return 1  # closing the socket tells the appliance to stop and clean up
    return run(stdin_text, dict(os.environ), Output(sys.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
