from pathlib import Path

from gitserver.commands import registry
from gitserver.commands.docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def test_docs_are_generated_from_the_registry() -> None:
    assert DOCS.read_text() == render(registry), (
        "regenerate: python -m gitserver.commands.docs > docs/commands.md"
    )
