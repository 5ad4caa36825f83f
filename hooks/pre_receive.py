"""The git pre-receive hook: read `old new ref` lines, deploy the deploy branch, map errors to exit codes.

git runs it inside `git receive-pack`, which the SSH server started for an authorized user while
holding the app's deploy lock (so the ref update that follows a successful hook is covered too).
The server passes who and what through the environment: DEIS_APP, DEIS_USER, DEIS_STATE_DIR.
Everything printed here reaches the pusher live as `remote:` lines. Exit 0 accepts the push;
anything else rejects it and leaves every ref unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from appliance import pipeline
from appliance.errors import DeisError
from appliance.output import Output
from appliance.settings import Settings

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


def run(stdin_text: str, env: dict[str, str], out: Output) -> int:
    app, user = env["DEIS_APP"], env["DEIS_USER"]
    updates = parse_updates(stdin_text)
    target = deploy_target(updates)
    for _, new, ref in updates:
        if target is None or ref != target[2]:
            out.detail(
                f"{ref.removeprefix('refs/heads/')} {'deleted' if new == ZERO else 'stored'} (not deployed:"
                " only master or main deploys)"
            )
    if target is None:
        return 0
    _, new, ref = target
    if new == ZERO:
        out.error(f"deleting {ref.removeprefix('refs/heads/')} is not allowed: it is what {app} runs")
        return 1
    settings = Settings.load(env.get("DEIS_STATE_DIR"))
    repo = Path(env.get("GIT_DIR", ".")).resolve()
    try:
        pipeline.deploy(pipeline.Platform.from_settings(settings), app, repo, new, user, out)
    except DeisError as exc:
        out.error(exc.message)
        out.error("push rejected: nothing changed, the previous release keeps serving")
        return 1
    except KeyboardInterrupt:
        out.error("deploy interrupted")
        return 1
    return 0


def _terminate(signum: int, frame: object) -> None:
    # The SSH server sends SIGTERM when the pusher hangs up: unwind, so the rollout removes what it started.
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    return run(sys.stdin.read(), dict(os.environ), Output(sys.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
