from __future__ import annotations

from pathlib import Path

import pytest

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
