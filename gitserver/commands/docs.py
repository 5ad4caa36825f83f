"""docs/commands.md, generated from the command registry so the two cannot drift apart.

python -m gitserver.commands.docs > docs/commands.md
"""

from __future__ import annotations

from gitserver.cli import Registry
from gitserver.commands import registry

HEADER = """# Commands

Everything is `ssh deis COMMAND [ARGS]`, where `deis` is your ssh alias for the platform
(`Host deis` / `HostName HOST` / `Port 2222` / `User git` in `~/.ssh/config`). Deploys are `git push`.

- The app comes from `--app/-a APP`, else from a first argument that names one of your apps, else it
  is your only app; otherwise the error lists your apps.
- `--json` works on every listing.
- The ssh client joins its arguments with spaces and the server splits them again with shell-like
  quoting, so a value with spaces or quotes needs one more layer of quotes:
  `ssh deis config:set "'GREETING=hello world'"`. Nothing is expanded on the server (`$`, backticks,
  globs are kept as they are).
- Exit status: 0 success, 1 failure, 2 usage error.
"""


def render(reg: Registry) -> str:
    parts = [HEADER]
    namespaces: dict[str, list[str]] = {}
    for name in sorted(reg.commands):
        namespaces.setdefault(name.split(":")[0], []).append(name)
    for ns, names in namespaces.items():
        parts.append(f"\n## {ns}\n")
        for name in names:
            cmd = reg.commands[name]
            usage = cmd.parser().format_usage().strip().removeprefix("usage: ")
            parts.append(f"\n### `{name}`\n\n{cmd.summary}\n\n```\nssh deis {usage}\n```\n")
            if cmd.aliases:
                parts.append(f"\nAlso: {', '.join(f'`{a}`' for a in cmd.aliases)}.\n")
            if cmd.examples:
                parts.append("\nExample:\n\n```\n" + "\n".join(cmd.examples) + "\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(registry), end="")
