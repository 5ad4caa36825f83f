from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import systemd
from core.errors import ValidationError
from tests.unitverify import verify

TRICKY = ["a b", "50%", "$HOME", "${X}", 'say "hi"', "back\\slash", "two\nlines", "tab\there", ";", "'q'"]


def test_exec_line_quotes_only_what_needs_it() -> None:
    assert (
        systemd.exec_line(["/usr/bin/docker", "stop", "app_v2.web.1"]) == "/usr/bin/docker stop app_v2.web.1"
    )
    assert systemd.exec_line(["/bin/x", *TRICKY]) == (
        '/bin/x "a b" "50%%" "$$HOME" "$${X}" "say \\"hi\\"" "back\\\\slash" "two\\nlines" "tab\\there" '
        "\\; \"'q'\""
    )


def test_environment_escapes_specifiers_but_not_dollars() -> None:
    assert systemd.environment("K", "v") == "K=v"
    assert systemd.environment("K", '50% $X "q"\n') == '"K=50%% $X \\"q\\"\\n"'


def test_nul_and_multiline_free_text_are_refused() -> None:
    with pytest.raises(ValidationError):
        systemd.exec_line(["/bin/x", "a\0b"])
    with pytest.raises(ValidationError):
        systemd.specifiers("two\nlines")
    assert systemd.specifiers("100% sure") == "100%% sure"


def test_systemd_accepts_the_quoted_words(tmp_path: Path) -> None:
    lines = [systemd.environment(f"K{i}", value) for i, value in enumerate(TRICKY)]
    text = (
        f"[Unit]\nDescription={systemd.specifiers('50% of $X')}\n[Service]\n"
        + "".join(f"Environment={line}\n" for line in lines)
        + f"ExecStart={systemd.exec_line(['/usr/bin/env', *TRICKY])}\n"
    )
    verify(tmp_path, "tricky.service", text)


def test_systemd_accepts_control_characters_and_unicode(tmp_path: Path) -> None:
    odd = ["\x01ctl\x7f", "ünïcødé ☃", "\r\n"]
    text = (
        "[Service]\n"
        + "".join(f"Environment={systemd.environment('K', value)}\n" for value in odd)
        + f"ExecStart={systemd.exec_line(['/usr/bin/env', *odd])}\n"
    )
    verify(tmp_path, "odd.service", text)


def _unquote_words(line: str) -> list[str]:
    """systemd's reading of a word list (extract_first_word with UNQUOTE|CUNESCAPE), for the forms
    core.systemd writes: plain words, `\\;`, and double-quoted words with C escapes."""
    escapes = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
    words: list[str] = []
    i = 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        if line[i] != '"':
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            word = line[i:end]
            words.append(";" if word == "\\;" else word)
            i = end
            continue
        i += 1
        out = []
        while line[i] != '"':
            if line[i] == "\\":
                if line[i + 1] == "x":
                    out.append(chr(int(line[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                out.append(escapes[line[i + 1]])
                i += 2
                continue
            out.append(line[i])
            i += 1
        words.append("".join(out))
        i += 1
    return words


@given(st.lists(st.text(st.characters(blacklist_characters="\0"), min_size=1), min_size=1, max_size=5))
def test_exec_lines_round_trip(argv: list[str]) -> None:
    line = systemd.exec_line(argv)
    assert "\n" not in line
    # systemd expands specifiers on the line, splits and unquotes it, then expands $ in each word.
    words = _unquote_words(line.replace("%%", "\0")).copy()
    assert [w.replace("\0", "%").replace("$$", "$") for w in words] == argv


@given(st.text(st.characters(blacklist_characters="\0")))
def test_environment_values_round_trip(value: str) -> None:
    line = systemd.environment("K", value)
    assert "\n" not in line
    (word,) = _unquote_words(line.replace("%%", "\0"))
    assert word.replace("\0", "%") == f"K={value}"
