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

    unreachable: set[str] = field(default_factory=set)  # names whose validation fails

    def issue(self, names: list[str], answer: Callable[[dict[str, str]], None]) -> Cert:
        self.calls.append(names)
        answer({TOKEN: KEY_AUTH})
        try:
            if self.fail:
                raise AcmeError(self.fail)
            failed = tuple(n for n in names if n in self.unreachable)
            if failed:
                raise AcmeError(f"{failed[0]}: connection refused", failed)
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


def _renewable(p: Platform, app: str, account: Account, *, expires_in: float) -> dict:
    """An automatic certificate for the app's domains, expiring in `expires_in` seconds."""
    assert acme.ensure(p, app) is True
    cert = domains.get_cert(p.store, app) or {}
    domains.set_cert(p.store, app, {**cert, "not_after": time.time() + expires_in})
    return domains.get_cert(p.store, app) or {}


def test_a_new_domain_that_fails_validation_holds_back_only_itself(
    p: Platform, app: str, account: Account
) -> None:
    www, new = f"www.{app}.example.com", f"new.{app}.example.com"
    working = _renewable(p, app, account, expires_in=86400 * 80)
    domains.add_domain(p.store, app, new, "alice")
    account.unreachable = {new}
    assert acme.ensure(p, app) is False  # www's certificate is current: no new one for it alone
    assert account.calls[-1] == [new, www] and domains.get_cert(p.store, app) == working
    state = domains.get_acme(p.store, app) or {}
    assert set(acme.held_back(state, time.time())) == {new} and state["held"][new]["failures"] == 1
    assert acme.due(p, app, time.time()) is None  # while its backoff lasts
    assert f"certs:auto could not validate {new}" in messages(p, app)[-1]
    # due for renewal meanwhile: renewed without the held-back name
    domains.set_cert(p.store, app, {**working, "not_after": time.time() + 3600})
    assert acme.ensure(p, app) is True and account.calls[-1] == [www]
    # its backoff over and its DNS fixed: one certificate for both
    state = domains.get_acme(p.store, app) or {}
    state["held"][new]["next_try"] = 0
    domains.set_acme(p.store, app, state)
    account.unreachable = set()
    assert acme.ensure(p, app) is True
    assert sorted((domains.get_cert(p.store, app) or {})["names"]) == [new, www]
    assert (domains.get_acme(p.store, app) or {})["held"] == {}


def test_a_covered_domain_failing_keeps_the_certificate_until_it_nears_expiry(
    p: Platform, app: str, account: Account
) -> None:
    www, api = f"www.{app}.example.com", f"api.{app}.example.com"
    domains.add_domain(p.store, app, api, "alice")
    working = _renewable(p, app, account, expires_in=86400 * 20)  # due, half the window left
    account.unreachable = {api}
    with pytest.raises(AcmeError, match="connection refused"):
        acme.ensure(p, app)
    assert domains.get_cert(p.store, app) == working  # still covers api: not narrowed
    domains.set_cert(p.store, app, {**working, "not_after": time.time() + 86400 * 5})
    assert acme.ensure(p, app, force=True) is True  # five days left: www must not lapse with api
    assert (domains.get_cert(p.store, app) or {})["names"] == [www]


def test_answers_left_by_a_stopped_appliance_are_taken_back(p: Platform, app: str) -> None:
    domains.set_challenges(p.store, app, {TOKEN: KEY_AUTH})
    acme.clear_stale(p)
    router = p.router
    assert isinstance(router, Router)
    assert domains.get_challenges(p.store, app) == {} and router.sites[-1].challenges == {}
