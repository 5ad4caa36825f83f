import pytest

from builders.dockerfile import build_kwargs, stream_lines
from builders.source import parse_procfile
from core.errors import ValidationError


def test_parse_procfile() -> None:
    text = "# comment\nweb: gunicorn app:wsgi --bind 0.0.0.0:$PORT\n\nworker:  python worker.py  \n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:wsgi --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
    }


@pytest.mark.parametrize("text", ["web", "web:", "Web: x", "a b: c"])
def test_bad_procfile_lines(text: str) -> None:
    with pytest.raises(ValidationError, match="Procfile line 1"):
        parse_procfile(text)


def test_build_kwargs() -> None:
    assert build_kwargs("127.0.0.1:5000/app:git-abc", "/var/lib/deis") == {
        "tag": "127.0.0.1:5000/app:git-abc",
        "labels": {"io.deis.platform": "/var/lib/deis"},
        "custom_context": True,
        "encoding": None,
        "rm": True,
        "forcerm": True,
        "pull": False,
        "decode": True,
    }


def test_stream_lines_relays_and_raises() -> None:
    seen: list[str] = []
    chunks = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"stream": " ---> abc"},
        {"stream": "\n"},
        {"error": "boom\n"},
    ]
    with pytest.raises(Exception, match="docker build failed: boom"):
        stream_lines(iter(chunks), seen.append)
    assert seen == ["Step 1/2 : FROM x", " ---> abc"]
