"""The platform's voice: `-----> ` steps, 7-space details, ` !     ` errors (Heroku's and Deis's format)."""

from __future__ import annotations

import sys
from typing import IO


class Output:
    """Writes lines to a text stream and flushes each one: a pusher sees them live."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # The pusher went away; the deploy carries on (its own lock and cleanup still matter).
            pass

    def step(self, message: str) -> None:
        self._write(f"-----> {message}\n")

    def detail(self, message: str) -> None:
        for line in message.rstrip("\n").split("\n"):
            self._write(f"       {line}\n")

    def error(self, message: str) -> None:
        for line in message.rstrip("\n").split("\n"):
            self._write(f" !     {line}\n")

    def poll(self) -> None:
        """Write nothing: a stream whose reader is gone raises here (the deploy socket's relay raises
        KeyboardInterrupt), so a long silent step can notice a hang-up without printing."""
        self._write("")

    def line(self, message: str = "") -> None:
        self._write(f"{message}\n")
