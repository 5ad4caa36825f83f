""".env files for config:push and config:pull: pure `parse` and `render`.

`parse(render(config)) == config` for every config the platform accepts (any value but NUL).

What `parse` reads, one `KEY=value` per line:
  - blank lines and lines whose first non-blank character is `#` are skipped; `export KEY=v` is read
    as `KEY=v`; blanks around KEY are ignored (CRLF line ends too)
  - `KEY='value'`: literal up to the next `'`, newlines included, no escapes
  - `KEY="value"`: up to the next unescaped `"`, newlines included; escapes `\\\\ \\" \\n \\r \\t`
    (any other backslash is kept as it is)
  - after a closing quote only blanks and a `# comment` may follow
  - anything else is a bare value, kept exactly to the end of the line: `#`, `$(...)`, backticks,
    inner spaces and quotes are part of it (nothing is expanded, and there are no inline comments,
    so a URL's `#fragment` survives)
  - a key given twice: the last one wins, as in a shell; a leading UTF-8 BOM is ignored

`render` writes bare values where that is unambiguous and readable, single quotes where a value has
no `'` and no line break, else double quotes with the escapes above.
"""

from __future__ import annotations

import re

from core.errors import ValidationError
from core.names import check_config_key, check_config_value

_BARE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_EXPORT = re.compile(r"export[ \t]+")


def render(config: dict[str, str]) -> str:
    return "".join(f"{key}={_quote(config[key])}\n" for key in sorted(config))


def _quote(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def parse(text: str) -> dict[str, str]:
    """The config a .env text sets; a ValidationError naming the line on anything malformed."""
    config: dict[str, str] = {}
    text = text.removeprefix("\ufeff")  # editors on some systems start UTF-8 files with a BOM
    pos, line_no, n = 0, 1, len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        line = text[pos:end]
        start_line = line_no
        stripped = line.strip(" \t\r")
        if not stripped or stripped.startswith("#"):
            pos, line_no = end + 1, line_no + 1
            continue
        head, sep, _ = line.partition("=")
        if not sep:
            raise ValidationError(f".env line {line_no}: expected KEY=value, got {_clip(line)!r}")
        key = _EXPORT.sub("", head.strip(" \t"), count=1).strip(" \t")
        try:
            check_config_key(key)
        except ValidationError as exc:
            raise ValidationError(f".env line {line_no}: {exc}") from exc
        vstart = pos + len(head) + 1
        rest = text[vstart:end]
        lead = len(rest) - len(rest.lstrip(" \t"))
        if rest[lead : lead + 1] in ("'", '"'):
            value, after = _quoted(text, vstart + lead, start_line)
            line_no += text.count("\n", vstart, after)
            end = text.find("\n", after)
            end = n if end < 0 else end
            trailer = text[after:end].strip(" \t\r")
            if trailer and not trailer.startswith("#"):
                raise ValidationError(
                    f".env line {line_no}: unexpected {_clip(trailer)!r} after the closing quote of {key}"
                )
        else:
            value = rest[:-1] if rest.endswith("\r") else rest
        config[key] = check_config_value(key, value)
        pos, line_no = end + 1, line_no + 1
    return config


def _quoted(text: str, at: int, line_no: int) -> tuple[str, int]:
    """The value of the quoted string starting at text[at], and the index after its closing quote."""
    quote = text[at]
    i = at + 1
    if quote == "'":
        close = text.find("'", i)
        if close < 0:
            raise ValidationError(f".env line {line_no}: unterminated ' quote")
        return text[i:close], close + 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
        out.append(c)
        i += 1
    raise ValidationError(f'.env line {line_no}: unterminated " quote')


def _clip(s: str, limit: int = 40) -> str:
    return s if len(s) <= limit else s[:limit] + "..."
