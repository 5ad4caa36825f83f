"""Log drain receivers on loopback for the drain tests: syslog over TCP or TLS (octet-counted RFC 5424
frames) and HTTPS in Heroku's logplex format. Each keeps what it received, in order."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from pathlib import Path

from tests.pki import TestCA


def split_frames(data: bytes) -> tuple[list[str], bytes]:
    """The octet-counted messages in `data`, and what is left of a message still arriving."""
    messages = []
    while b" " in data:
        size, _, rest = data.partition(b" ")
        if len(rest) < int(size):
            break
        messages.append(rest[: int(size)].decode())
        data = rest[int(size) :]
    return messages, data


def server_context(ca: TestCA, directory: Path, name: str = "localhost") -> ssl.SSLContext:
    chain, key = ca.issue([name])
    (directory / f"{name}.pem").write_text(chain)
    (directory / f"{name}.key").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / f"{name}.pem", directory / f"{name}.key")
    return context


class SyslogServer:
    """A syslog receiver (TCP, or TLS with `context`)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            with conn:
                while chunk := conn.recv(65536):
                    found, buf = split_frames(buf + chunk)
                    self.messages.extend(found)
        except (OSError, ssl.SSLError):
            return  # a client that failed the handshake (the tests of bad certificates)

    def close(self) -> None:
        self.sock.close()


class LogplexServer:
    """An HTTPS (or HTTP) drain endpoint: answers `statuses` in turn (then 200) and keeps each POST's
    headers and messages."""

    def __init__(self, context: ssl.SSLContext | None = None, statuses: list[int] | None = None) -> None:
        self.posts: list[tuple[str, dict[str, str], list[str]]] = []
        self.statuses = list(statuses or [])
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = owner.statuses.pop(0) if owner.statuses else 200
                if status == 200:
                    owner.posts.append((self.path, dict(self.headers), split_frames(body)[0]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def messages(self) -> list[str]:
        return [m for _, _, found in self.posts for m in found]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
