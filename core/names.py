"""Names the platform hands out or accepts, and the rules they follow (from Deis v1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ValidationError

APP_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROCESS_TYPE_RE = re.compile(r"[a-z][a-z0-9_-]{0,29}")
USER_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
CONTAINER_RE = re.compile(
    r"(?P<app>[a-z][a-z0-9-]{0,62})_v(?P<version>[0-9]+)\.(?P<type>[a-z][a-z0-9_-]*)\.(?P<num>[0-9]+)"
)
ROUTED_TYPES = ("web", "cmd")
# Containers of these types run once (`run`, the release phase); deploys and the reconciler leave them be.
ONE_OFF_TYPES = ("run", "release")


def check_app(name: str) -> str:
    if not APP_RE.fullmatch(name):
        raise ValidationError(
            f"invalid app name {name!r}: use lowercase letters, digits and dashes, starting with a letter"
            " (at most 63 characters)"
        )
    return name


def check_config_key(key: str) -> str:
    if not CONFIG_KEY_RE.fullmatch(key):
        raise ValidationError(
            f"invalid config key {key!r}: use letters, digits and underscores, not a digit first"
        )
    return key


def check_config_value(key: str, value: str) -> str:
    if "\x00" in value:
        raise ValidationError(f"config value of {key} contains a NUL byte, which no environment can carry")
    return value


def check_process_type(ptype: str) -> str:
    if not PROCESS_TYPE_RE.fullmatch(ptype):
        raise ValidationError(f"invalid process type {ptype!r}")
    return ptype


def check_user(name: str) -> str:
    if not USER_RE.fullmatch(name):
        raise ValidationError(
            f"invalid user name {name!r}: use lowercase letters, digits, '.', '_' and '-' (at most 63)"
        )
    return name


def app_from_repo_path(path: str) -> str:
    """`myapp.git`, `/myapp.git` or `~/myapp` (what git clients send) -> `myapp`; else refused."""
    p = path.strip()
    if p.startswith("~/"):
        p = p[2:]
    p = p.lstrip("/")
    if p.endswith(".git"):
        p = p[:-4]
    if "/" in p or ".." in p:
        raise ValidationError(f"invalid repository path {path!r}: use APP.git")
    return check_app(p)


@dataclass(frozen=True)
class ContainerName:
    app: str
    version: int
    type: str
    num: int

    def __str__(self) -> str:
        return f"{self.app}_v{self.version}.{self.type}.{self.num}"

    @classmethod
    def parse(cls, name: str) -> ContainerName | None:
        m = CONTAINER_RE.fullmatch(name.lstrip("/"))
        if not m:
            return None
        return cls(m["app"], int(m["version"]), m["type"], int(m["num"]))


_MEMORY_RE = re.compile(r"([0-9]+)([bkmg]?)", re.IGNORECASE)
_MEMORY_UNIT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory_bytes(text: str) -> int:
    """A memory size as `limits:set` keeps it (`512m`, `1g`, `1024k`, plain bytes) in bytes."""
    m = _MEMORY_RE.fullmatch(text.strip())
    if not m:
        raise ValidationError(f"invalid memory size {text!r}: use a number and a unit, like 512M or 1G")
    return int(m[1]) * _MEMORY_UNIT[m[2].lower()]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` safe to print on a terminal: control characters (escape sequences start with one)
    written as `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
