"""The .env format of config:push / config:pull: examples, errors, and the exact round trip."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from gitserver.dotenv import parse, render

HOSTILE = {
    "SQ": "it's",
    "DQ": 'say "hi"',
    "BOTH": "'a' \"b\"",
    "SPACES": "  two  words  ",
    "EQ": "a=b==c",
    "SUBST": "$(id) ${HOME} $HOME",
    "TICKS": "`uname -a`",
    "NL": "line1\nline2\n",
    "CRLF": "a\r\nb\r",
    "BS": "C:\\path\\n\\\\",
    "HASH": "x # not a comment",
    "UNI": "grüße 日本 🚀",
    "EMPTY": "",
    "TAB": "\ta\t",
    "EXPORT": "export X=1",
    "BIG": "x'\"\\\n" * 13000 + "z" * 536,  # 64 KiB
}


def test_examples() -> None:
    text = (
        "# a comment\n"
        "\n"
        "export A=1\n"
        "  B = plain value # kept\n"
        "C='single $(x) \\n'\n"
        'D="double \\"q\\" \\n \\\\ \\t \\x"   # comment after the quote\n'
        "E='multi\n"
        "line'\n"
        "F=\r\n"
        "G=last"
    )
    assert parse(text) == {
        "A": "1",
        "B": " plain value # kept",
        "C": "single $(x) \\n",
        "D": 'double "q" \n \\ \t \\x',
        "E": "multi\nline",
        "F": "",
        "G": "last",
    }


def test_last_duplicate_wins_and_a_bom_is_ignored() -> None:
    assert parse("A=1\nA=2\n") == {"A": "2"}
    assert parse("\ufeffA=1\r\n") == {"A": "1"}


def test_render_is_readable_where_it_can_be() -> None:
    assert render({"B": "postgres://u:p@db:5432/x", "A": "two words", "C": "it's\n"}) == (
        "A='two words'\nB=postgres://u:p@db:5432/x\nC=\"it's\\n\"\n"
    )


def test_hostile_values_round_trip_exactly() -> None:
    assert len(HOSTILE["BIG"]) == 64 * 1024
    assert parse(render(HOSTILE)) == HOSTILE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NOEQUALS\n", "line 1: expected KEY=value"),
        ("A=1\n1BAD=x\n", "line 2: invalid config key '1BAD'"),
        ("A='open\n", "line 1: unterminated ' quote"),
        ('A=1\nB="open\\"\n', 'line 2: unterminated " quote'),
        ("A='x\ny' junk\n", "line 2: unexpected 'junk'"),
        ("A=a\x00b\n", "NUL"),
        ("=x\n", "invalid config key ''"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("'", ".")):
        parse(text)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
keys = st.builds(lambda a, b: a + b, st.sampled_from(_FIRST), st.text(_FIRST + "0123456789", max_size=12))
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200)


@hypothesis.given(st.dictionaries(keys, values, max_size=8))
@hypothesis.settings(max_examples=300, deadline=None)
def test_property_round_trip(config: dict[str, str]) -> None:
    assert parse(render(config)) == config


@hypothesis.given(st.text(max_size=300))
@hypothesis.settings(max_examples=500, deadline=None)
def test_property_parse_fails_only_with_validation_errors(text: str) -> None:
    try:
        parse(text)
    except ValidationError as exc:
        assert "\n" not in str(exc)
