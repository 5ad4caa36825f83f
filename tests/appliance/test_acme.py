"""certs:auto's decisions and bookkeeping with a real etcd and a router that records what it is told;
the ACME account is a stand-in here (the real one meets pebble in tests/e2e/test_acme.py).

A failure must leave the certificate that serves as it was, back off, and say so in the events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance import acme
from appliance.platform import Platform
from core.errors import AcmeError, RouterError
from core.settings import Settings
from releaser import apps, domains, events
from releaser.store import Store
from routerconf.site import Cert, Site
from scheduler.memory import MemoryBackend
from tests.pki import TestCA

TOKEN, KEY_AUTH = "tok-1", "tok-1.thumb"


@dataclass
class Router:
    sites: list[Site] = field(default_factory=list)
    refuse_certs: bool = False

    def publish(self, app: str, endpoints: list[str], site: Site | None = None) -> None:
        if self.refuse_certs and site is not None and site.cert is not None:
            raise RouterError(f"nginx refused the configuration for {app}: test")
        self.sites.append(site or Site())

    def remove(self, app: str) -> None:
        pass


@dataclass
class Account:
    """Answers like an ACME server: publishes one token, then issues from `ca` or fails."""

    ca: TestCA
    fail: str | None = None
    calls: list[list[str]] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)
    days: int = 90

    def issue(self, names: list[str], answer: Callable[[dict[str, str]], None]) -> Cert:
        self.calls.append(names)
        answer({TOKEN: KEY_AUTH})
        try:
            if self.fail:
                raise AcmeError(self.fail)
            chain, key = self.ca.issue(names, days=self.days)
            return Cert(chain, key)
        finally:
            answer({})


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA.make(tmp_path)


@pytest.fixture
def p(store: Store, tmp_path: Path) -> Platform:
    s = Settings(state_dir=tmp_path, acme_retry_min=10, acme_retry_max=25, lock_wait=5)
    return Platform(s, store, Router(), MemoryBackend({}))


@pytest.fixture
def account(p: Platform, ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    fake = Account(ca)
    monkeypatch.setattr(acme, "account", lambda platform: fake)
    yield fake


@pytest.fixture
def app(p: Platform) -> str:
    name = f"a{uuid.uuid4().hex[:8]}"
    apps.create_app(p.store, name, "alice")
    for d in (f"www.{name}.example.com", f"*.{name}.example.com"):
        domains.add_domain(p.store, name, d, "alice")
    domains.set_acme(p.store, name, {"by": "alice", "since": time.time(), "failures": 0, "next_try": 0})
    return name


def messages(p: Platform, app: str) -> list[str]:
    return [e.message for e in events.recent(p.store, app)]


def test_due_covers_the_custom_domains_but_wildcards(p: Platform, app: str, ca: TestCA) -> None:
    www = f"www.{app}.example.com"
    assert acme.due(p, app, time.time()) == [www]
    manual = {"names": [www], "not_after": time.time() + 86400 * 80}
    domains.set_cert(p.store, app, manual)
    assert acme.due(p, app, time.time()) == [www]  # a manual certificate is replaced
    domains.set_cert(p.store, app, {**manual, "auto": True})
    assert acme.due(p, app, time.time()) is None  # fresh and covering
    assert acme.due(p, app, time.time() + 86400 * 51) == [www]  # within 30 days of expiry
    domains.add_domain(p.store, app, f"api.{app}.example.com", "alice")
    assert acme.due(p, app, time.time()) == [f"api.{app}.example.com", www]  # misses one
    domains.set_acme(p.store, app, None)
    assert acme.due(p, app, time.time()) is None  # certs:auto off


def test_issuance_publishes_the_token_then_the_certificate(p: Platform, app: str, account: Account) -> None:
    assert acme.ensure(p, app) is True
    router = p.router
    assert isinstance(router, Router)
    assert [s.challenges for s in router.sites] == [{TOKEN: KEY_AUTH}, {}, {}]
    assert router.sites[-1].cert is not None and domains.get_challenges(p.store, app) == {}
    cert = domains.get_cert(p.store, app)
    assert cert is not None and cert["auto"] is True and cert["names"] == [f"www.{app}.example.com"]
    assert messages(p, app)[-1].startswith(f"certs:auto issued a certificate for www.{app}.example.com")
    assert acme.ensure(p, app) is False and len(account.calls) == 1  # nothing due now


def test_a_failure_keeps_the_certificate_and_backs_off(p: Platform, app: str, account: Account) -> None:
    acme.ensure(p, app)
    working = domains.get_cert(p.store, app)
    assert working is not None
    domains.set_cert(p.store, app, {**working, "not_after": time.time() + 3600})  # due for renewal
    working = domains.get_cert(p.store, app)
    account.fail = "www: DNS problem: SERVFAIL"
    delays = []
    for _ in range(3):
        with pytest.raises(AcmeError, match="SERVFAIL"):
            acme.ensure(p, app, force=True)
        state = domains.get_acme(p.store, app) or {}
        delays.append(round(state["next_try"] - time.time()))
        assert domains.get_cert(p.store, app) == working and domains.get_challenges(p.store, app) == {}
    assert delays == [10, 20, 25] and state["failures"] == 3 and "SERVFAIL" in state["error"]
    assert (
        "certs:auto renewal failed: www: DNS problem: SERVFAIL; the current certificate stays"
        in (messages(p, app)[-1])
    )
    calls = len(account.calls)
    assert acme.ensure(p, app) is False and len(account.calls) == calls  # waits out the backoff
    account.fail = None
    assert acme.ensure(p, app, force=True) is True
    state = domains.get_acme(p.store, app) or {}
    assert (state["failures"], state["error"]) == (0, "")
    assert messages(p, app)[-1].startswith("certs:auto renewed a certificate")


def test_nginx_refusing_the_new_certificate_keeps_the_old(p: Platform, app: str, account: Account) -> None:
    manual = {"names": ["x"], "not_after": time.time() + 86400, "chain": "", "key": ""}
    domains.set_cert(p.store, app, manual)
    router = p.router
    assert isinstance(router, Router)
    router.refuse_certs = True
    with pytest.raises(AcmeError, match="nginx refused"):
        acme.ensure(p, app)
    assert domains.get_cert(p.store, app) == manual
    assert (domains.get_acme(p.store, app) or {})["failures"] == 1


def test_turned_off_during_issuance_stores_nothing(p: Platform, app: str, account: Account) -> None:
    issue = account.issue

    def off_meanwhile(names: list[str], answer: Callable[[dict[str, str]], None]) -> Cert:
        domains.set_acme(p.store, app, None)
        return issue(names, answer)

    account.issue = off_meanwhile  # type: ignore[method-assign]
    assert acme.ensure(p, app) is False
    assert domains.get_cert(p.store, app) is None and domains.get_acme(p.store, app) is None


def test_other_pending_tokens_of_the_app_are_kept(p: Platform, app: str, account: Account) -> None:
    domains.set_challenges(p.store, app, {"other": "other.thumb"})  # another issuance's, in flight
    acme.ensure(p, app)
    router = p.router
    assert isinstance(router, Router)
    assert router.sites[0].challenges == {"other": "other.thumb", TOKEN: KEY_AUTH}
    assert domains.get_challenges(p.store, app) == {"other": "other.thumb"}
