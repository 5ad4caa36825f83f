"""Dockerfiles, read before anything builds them (pure; builders.dockerbuild runs the build).

    parse(text)              -> instructions (continuations joined, comments dropped), or a one-line
                                BuildError for what the builder cannot do (heredocs need buildah 1.33)
    sanitize(text, context)  -> the Dockerfile buildah gets: every `RUN --mount` checked and cache
                                mounts given flat ids (buildah 1.28 joins a cache id or target onto
                                the cache dir as a path, so `id=../..` or a symlink a previous step
                                left in a nested cache dir would mount a host directory)
    base_images(text, args)  -> the images FROM and COPY --from name (not stages, not scratch)

`build_kwargs` and `stream_lines` serve the engine's legacy builder (`dockerfile_builder=docker`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BuildError

HEREDOC = re.compile(r"(?<!<)<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
# What each mount type may say; anything else is refused before the build starts.
MOUNT_KEYS = {
    "cache": {"type", "target", "dst", "destination", "id", "sharing", "mode", "uid", "gid", "ro"},
    "bind": {"type", "target", "dst", "destination", "source", "src", "ro", "readonly", "bind-propagation"},
    "secret": {"type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"},
    "tmpfs": {"type", "target", "dst", "destination", "size", "tmpfs-size", "tmpfs-mode"},
}


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based)
    keyword: str  # upper case
    args: str  # the rest, continuations joined by a space
    raw: str  # exactly as written, continuation lines included


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; BuildError for a heredoc (one line: where and what to do)."""
    escape = "\\"
    lines = text.splitlines()
    found: list[Instruction] = []
    i = 0
    directives = True
    while i < len(lines):
        stripped = lines[i].strip()
        match = _DIRECTIVE.match(stripped) if directives else None
        if match and match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
        if not stripped or stripped.startswith("#"):
            directives = directives and bool(match)
            i += 1
            continue
        directives = False
        start, parts, raw = i, [], []
        while i < len(lines):
            raw.append(lines[i])
            piece = lines[i].rstrip()
            if piece.strip().startswith("#") and i > start:
                i += 1
                continue
            if piece.endswith(escape):
                parts.append(piece[:-1])
                i += 1
                continue
            parts.append(piece)
            i += 1
            break
        keyword, _, args = " ".join(p.strip() for p in parts).partition(" ")
        found.append(Instruction(start + 1, keyword.upper(), args.strip(), "\n".join(raw)))
    for ins in found:
        check_heredoc(ins)
    return found


def check_heredoc(ins: Instruction) -> None:
    if ins.keyword not in ("RUN", "COPY", "ADD"):
        return
    match = HEREDOC.search(ins.args)
    if match:
        raise BuildError(
            f"Dockerfile line {ins.line}: heredocs ({ins.keyword} <<{match.group(2)}) need a newer builder"
            " than this platform's (buildah 1.28): commit the file and COPY it, or write it with"
            " RUN printf '...' > FILE"
        )


def flags(args: str) -> tuple[list[str], str]:
    """The leading `--name=value` flags of an instruction, and the rest."""
    found = []
    rest = args
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        found.append(token)
        rest = rest.lstrip()
    return found, rest


def mount_options(flag: str) -> dict[str, str]:
    """`--mount=type=cache,target=/x,ro` as {"type": "cache", "target": "/x", "ro": ""}."""
    spec = flag.partition("=")[2]
    opts: dict[str, str] = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        opts[key.strip().lower()] = value.strip()
    opts.setdefault("type", "bind")
    return opts


def cache_id(opts: Mapping[str, str]) -> str:
    """A flat directory name for a cache mount: its id (or target) hashed, so never a path."""
    name = opts.get("id") or opts.get("target") or opts.get("dst") or opts.get("destination") or ""
    return "c" + hashlib.sha256(name.encode()).hexdigest()[:24]


def check_bind_source(source: str, context: Path, line: int) -> None:
    """A bind mount's source must stay in the context and go through no symlink: buildah resolves
    it on the host, so a committed `link -> /` would mount the host's root."""
    parts = [p for p in source.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BuildError(f"Dockerfile line {line}: a bind mount's source may not leave the build context")
    path = context
    for part in parts:
        path = path / part
        if os.path.islink(path):
            raise BuildError(
                f"Dockerfile line {line}: the bind mount source {source} is or goes through a symlink;"
                " mount the directory it points to instead"
            )


def checked_mount(flag: str, context: Path, line: int) -> str:
    """The `--mount` flag buildah gets for `flag`, or a BuildError saying what is not allowed."""
    opts = mount_options(flag)
    kind = opts["type"]
    where = f"Dockerfile line {line}"
    if "$" in flag:
        raise BuildError(f"{where}: variables are not expanded in --mount options; write the values out")
    if kind not in MOUNT_KEYS:
        raise BuildError(
            f"{where}: RUN --mount=type={kind} is not supported (cache, bind, secret, tmpfs are)"
        )
    if kind == "cache" and "readonly" in opts:
        opts["ro"] = opts.pop("readonly")
    if kind in ("cache", "bind") and "from" in opts:
        raise BuildError(f"{where}: RUN --mount=type={kind},from=... is not supported; use COPY --from")
    if kind == "bind" and ({"rw", "readwrite"} & set(opts)):
        raise BuildError(f"{where}: bind mounts of the build context are read-only here (drop rw)")
    unknown = sorted(set(opts) - MOUNT_KEYS[kind])
    if unknown:
        raise BuildError(f"{where}: RUN --mount=type={kind} does not take {', '.join(unknown)} here")
    if kind == "bind":
        check_bind_source(opts.get("source") or opts.get("src") or ".", context, line)
    if kind == "secret" and not re.fullmatch(r"[A-Za-z0-9_.-]+", opts.get("id", "")):
        raise BuildError(f"{where}: a secret mount needs id=NAME (letters, digits, _ . -)")
    if kind != "cache":
        return flag
    kept = [f"{k}={v}" if v else k for k, v in opts.items() if k != "id"]
    return "--mount=" + ",".join([*kept, f"id={cache_id(opts)}"])


def sanitize(text: str, context: Path) -> str:
    """The Dockerfile buildah builds: checked, with cache mounts rewritten to flat ids."""
    out = text
    for ins in parse(text):
        if ins.keyword != "RUN":
            continue
        found, _ = flags(ins.args)
        if any(f.startswith("--security") for f in found):
            raise BuildError(f"Dockerfile line {ins.line}: RUN --security is not supported")
        raw = ins.raw
        for flag in found:
            if flag.startswith("--mount="):
                if flag not in raw:  # split by a line continuation: too clever to check
                    raise BuildError(f"Dockerfile line {ins.line}: write each --mount option on one line")
                raw = raw.replace(flag, checked_mount(flag, context, ins.line), 1)
        out = out.replace(ins.raw, raw, 1)
    return out


def expand(value: str, args: Mapping[str, str]) -> str:
    """$VAR, ${VAR} and ${VAR:-default} from `args` (what FROM lines may use)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return args.get(name) or (m.group(2) or "")

    return _VAR.sub(sub, value)


def base_images(text: str, build_args: Mapping[str, str]) -> list[str]:
    """Images the build starts from or copies from, after ARG expansion, in order, once each."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    found: list[str] = []
    seen_from = False
    for ins in parse(text):
        if ins.keyword == "ARG" and not seen_from:
            name, _, default = ins.args.partition("=")
            args[name.strip()] = build_args.get(name.strip(), default.strip().strip("\"'"))
        elif ins.keyword == "FROM":
            seen_from = True
            _, rest = flags(ins.args)
            words = rest.split()
            image = expand(words[0], args) if words else ""
            if image and image.lower() not in stages and image != "scratch":
                found.append(image)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
        elif ins.keyword in ("COPY", "ADD"):
            for flag in flags(ins.args)[0]:
                if flag.startswith("--from="):
                    ref = flag.partition("=")[2]
                    if ref.lower() not in stages and not ref.isdigit():
                        found.append(ref)
    return list(dict.fromkeys(found))


# -- the engine's legacy builder ------------------------------------------------------------------


def build_kwargs(tag: str, platform: str = "") -> dict[str, Any]:
    """Arguments of the engine's build call: pure, so tests compare them exactly."""
    return {
        "tag": tag,
        # Marks what this platform built, so garbage collection prunes only its own dangling images.
        "labels": {"io.deis.platform": platform},
        "custom_context": True,
        "encoding": None,
        "rm": True,
        "forcerm": True,
        "pull": False,  # base images are local (no public registry is reachable); FROM resolves them
        "decode": True,
    }


def stream_lines(chunks: Iterable[dict[str, Any]], emit: Callable[[str], None]) -> None:
    """Relay the engine's build stream line by line; raise BuildError on its error message."""
    pending = ""
    for chunk in chunks:
        if "error" in chunk:
            if pending.strip():
                emit(pending.rstrip())
            raise BuildError(f"docker build failed: {str(chunk['error']).strip()}")
        text = chunk.get("stream")
        if not text:
            continue
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                emit(line.rstrip())
    if pending.strip():
        emit(pending.rstrip())
