"""ACME HTTP-01 answers in the router: exactly the pending tokens, answered by nginx itself before any
app setting (https redirect, allow list, maintenance), and nothing else passes into the config.

The ACME client itself (routerconf.acme) is exercised against pebble in tests/e2e/test_acme.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.errors import AcmeError, DeisError, ValidationError
from core.settings import Settings
from routerconf import Router, acme, render_app
from routerconf.site import Site, check_challenge

WWW = "www.example.com"
TOKEN = "-Ab_9" + "x" * 38  # base64url may start with '-', which no other rendered value may
KEY_AUTH = f"{TOKEN}.Th-umb_print0"
PATH = f"/.well-known/acme-challenge/{TOKEN}"


def test_a_challenge_renders_as_one_exact_answer_before_the_app_settings() -> None:
    site = Site(domains=(WWW,), options={"https_enforce": "true"}, challenges={TOKEN: KEY_AUTH})
    text = render_app("myapp", "localhost", ["127.0.0.1:5000"], 80, https_port=443, site=site)
    answer = f'    if ($uri = "{PATH}") {{\n        return 200 "{KEY_AUTH}";\n    }}\n'
    assert answer in text
    assert text.index(answer) < text.index("if ($scheme = http)")
    assert "acme-challenge" not in render_app("myapp", "localhost", [], 80, site=Site(domains=(WWW,)))


@pytest.mark.parametrize(
    ("token", "key_auth"),
    [
        ('a"; return 200 x; #', 'a"; return 200 x; #.b'),
        ("tok en", "tok en.thumb"),
        ("tok\nen", "tok\nen.thumb"),
        ("tok", "tok.thumb$host"),
        ("tok", "other.thumb"),  # an answer for another token
        ("tok", "tok"),
        ("", ".thumb"),
        ("a/../b", "a/../b.thumb"),
        ("x" * 129, "x" * 129 + ".t"),
    ],
)
def test_a_malformed_challenge_never_reaches_nginx(token: str, key_auth: str) -> None:
    with pytest.raises(ValidationError):
        check_challenge(token, key_auth)
    with pytest.raises(DeisError):
        render_app("myapp", "localhost", [], 80, site=Site(domains=(WWW,), challenges={token: key_auth}))
    with pytest.raises(AcmeError, match="unusable challenge"):
        acme.check_token(token, key_auth)


def test_nginx_answers_only_the_pending_tokens_ahead_of_every_setting(
    router: Router, settings: Settings, backend, http_get: Callable
) -> None:
    options = {"https_enforce": "true", "whitelist": "10.9.8.7", "maintenance": "true"}
    router.publish(
        "myapp", [backend.endpoint], Site(domains=(WWW,), options=options, challenges={TOKEN: KEY_AUTH})
    )
    for host in (WWW, "myapp.localhost"):
        resp = http_get(settings.http_port, host, PATH)
        assert (resp.status, resp.body) == (200, KEY_AUTH)
    # Another token, a prefix of the path, or the path with a suffix: the app's settings apply.
    for path in (f"/.well-known/acme-challenge/{TOKEN[:-1]}", PATH + "x", "/.well-known/acme-challenge/"):
        assert http_get(settings.http_port, WWW, path).status == 301
    # Another app's host never answers this app's tokens.
    router.publish("other", [backend.endpoint], Site(domains=("other.example.com",)))
    other = http_get(settings.http_port, "other.example.com", PATH)
    assert other.status == 200 and other.body == "hello from backend\n"
    assert backend.seen[-1]["host"] == "other.example.com"
    # Taken back: the path is the app's again (here: its https redirect).
    router.publish("myapp", [backend.endpoint], Site(domains=(WWW,), options=options))
    assert http_get(settings.http_port, WWW, PATH).status == 301
