"""Writing values into systemd unit files so they round-trip exactly (used by the fleet backend's units
and the cloud-config's units).

systemd reads a unit value through three layers, and each must be neutralised:
  specifiers   `%x` is expanded everywhere (Exec*, Environment=, Description=): `%` is written `%%`
  variables    `$X` / `${X}` is expanded in Exec* command lines only: `$` is written `$$` there
  words        Exec* and Environment= split on whitespace and unquote C-style: a word with anything
               outside a plain set is double-quoted with `\\`, `\"` and control characters escaped
NUL cannot be carried at all (config values exclude it, see DESIGN.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.errors import ValidationError

_PLAIN = re.compile(r"[A-Za-z0-9_./:=,@+-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _check(value: str) -> None:
    if "\0" in value:
        raise ValidationError("a value for a systemd unit cannot hold a NUL byte")


def _quote_word(word: str) -> str:
    """One word, double-quoted unless plain; control characters as `\\xHH`."""
    if _PLAIN.fullmatch(word):
        return word
    out = []
    for ch in word:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def specifiers(value: str) -> str:
    """A free-text value (Description=, a path): `%` doubled; no newline allowed."""
    _check(value)
    if "\n" in value:
        raise ValidationError("a systemd unit value cannot span lines")
    return value.replace("%", "%%")


def exec_line(argv: Sequence[str]) -> str:
    """An Exec*= command line running exactly `argv` (no shell, no expansion)."""
    if not argv:
        raise ValidationError("an empty command line")
    words = []
    for arg in argv:
        _check(arg)
        word = _quote_word(arg).replace("%", "%%").replace("$", "$$")
        # A lone `;` separates commands; systemd.service(5) spells a literal one `\;`.
        words.append("\\;" if arg == ";" else word)
    return " ".join(words)


def environment(key: str, value: str) -> str:
    """The value of one `Environment=` line setting `key` to exactly `value` (no `$` expansion there)."""
    _check(key + value)
    return _quote_word(f"{key}={value}").replace("%", "%%")
