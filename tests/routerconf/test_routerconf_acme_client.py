"""routerconf.acme against pebble on loopback, with a small HTTP server standing in for the router (the
whole path through nginx is tests/e2e/test_acme.py): the account is registered once and kept, what
goes wrong comes back as one AcmeError."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import AcmeError
from routerconf import tls
from routerconf.acme import Account
from routerconf.site import Cert
from tests.pebble import Pebble


class Answers(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.tokens: dict[str, str] = {}
        self.published: list[dict[str, str]] = []

    def answer(self, tokens: dict[str, str]) -> None:
        self.published.append(dict(tokens))
        self.tokens = dict(tokens)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Answers

    def do_GET(self) -> None:
        body = self.server.tokens.get(self.path.rsplit("/", 1)[-1], "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def answers() -> Iterator[Answers]:
    server = Answers()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, answers: Answers) -> Iterator[Pebble]:
    server = Pebble(tmp_path_factory.mktemp("pebble"), http_port=answers.server_address[1])
    try:
        yield server.start()
    finally:
        server.stop()


def test_issue_and_keep_the_account(pebble: Pebble, answers: Answers, tmp_path: Path) -> None:
    path = tmp_path / "acme" / "account.json"
    account = Account.load_or_register(path, pebble.directory, "ops@example.com", pebble.ca.file)
    saved = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    cert = account.issue(["www.one.example.com", "one.example.com"], answers.answer)
    info = tls.load(cert.chain, cert.key)
    assert sorted(info.names) == ["one.example.com", "www.one.example.com"]
    assert info.issuer.startswith("CN=Pebble Intermediate CA")
    assert len(answers.published[-2]) == 2 and answers.published[-1] == {}  # both tokens, then none
    again = Account.load_or_register(path, pebble.directory, "ops@example.com", pebble.ca.file)
    assert path.read_text() == saved  # registered once: the same key and account
    assert again.key.thumbprint() == account.key.thumbprint()


def test_a_failed_validation_is_one_error_and_takes_its_tokens_back(
    pebble: Pebble, answers: Answers, tmp_path: Path
) -> None:
    account = Account.load_or_register(tmp_path / "a.json", pebble.directory, "", pebble.ca.file)
    pebble.servfail("bad.example.com")
    try:
        with pytest.raises(AcmeError, match=r"for bad\.example\.com: bad\.example\.com: .*resolve"):
            account.issue(["bad.example.com"], answers.answer)
    finally:
        pebble.clear_servfail("bad.example.com")
    assert answers.published[-1] == {}


def test_an_untrusted_acme_server_says_how_to_trust_it(pebble: Pebble, tmp_path: Path) -> None:
    with pytest.raises(AcmeError, match="--acme-ca-bundle"):
        Account.load_or_register(tmp_path / "a.json", pebble.directory, "", None)
    assert not (tmp_path / "a.json").exists()


def test_an_account_the_server_forgot_is_registered_again(answers: Answers, tmp_path: Path) -> None:
    """pebble keeps its accounts in memory: a restarted one (same address) no longer knows ours."""
    first = Pebble(tmp_path / "first", http_port=answers.server_address[1]).start()
    path = tmp_path / "a.json"
    try:
        Account.load_or_register(path, first.directory, "", first.ca.file)
    finally:
        first.stop()
    saved = json.loads(path.read_text())
    ports = {k: getattr(first, k) for k in ("port", "management_port", "dns_port", "dns_management_port")}
    second = Pebble(tmp_path / "second", http_port=answers.server_address[1], **ports).start()
    try:
        account = Account.load_or_register(path, second.directory, "", second.ca.file)
        again = json.loads(path.read_text())
        assert again["key"] == saved["key"] and again["regr"] != saved["regr"]  # same key, new account
        info = tls.load(*_chain_and_key(account.issue(["two.example.com"], answers.answer)))
        assert info.names == ("two.example.com",)
    finally:
        second.stop()


def _chain_and_key(cert: Cert) -> tuple[str, str]:
    return cert.chain, cert.key
