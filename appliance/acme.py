"""Automatic certificates (`certs:auto`): what is due, getting it, and the thread that renews.

    due(p, app, now)            the domains APP needs a certificate for now, or None
    ensure(p, app, force=)      issue or renew if due (`force`: past every backoff); True if it did
    clear_stale(p)              take back answers left by an appliance stopped mid-issuance
    start_thread(p)             the renewal loop; returns its stop event (p.acme_wake wakes it)

An app with certs:auto gets one certificate for all its custom domains except wildcards (HTTP-01
cannot prove those): issued when it has none of its own making or it misses a domain, renewed
`settings.acme_renew_before` seconds before expiry. The challenge answers go to etcd and the router
under the app's lock, like every router change; so does the new certificate. A failure records an
event in the app's `logs`, backs off (acme_retry_min doubling to acme_retry_max), and never touches
the certificate that serves. A domain that fails validation is held back on a backoff of its own so
the others still get their certificate (see `droppable` for when a served one may be narrowed).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from appliance import pipeline
from appliance.platform import Platform
from core.errors import AcmeError, DeisError
from releaser import domains, events
from releaser.locks import AppLock
from routerconf import acme, tls

log = logging.getLogger("deis.acme")
ACTOR = "certs:auto"

# The account file is read (and on first use written) by one thread at a time, so two first
# issuances cannot register two accounts.
_account_guard = threading.Lock()
# One issuance per app at a time in this process (the loop and a certs:auto command may meet).
_busy: dict[str, threading.Lock] = {}
_busy_guard = threading.Lock()


def account(p: Platform) -> acme.Account:
    """The platform's ACME account, registered on first use and kept in its file. A client of its
    own for each issuance: the library's HTTP session and nonces are not shared between threads."""
    s = p.settings
    with _account_guard:
        return acme.Account.load_or_register(s.acme_account, s.acme_directory, s.acme_email, s.acme_ca_bundle)


def eligible(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith("*.")]


def held_back(state: dict[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """The names whose validation failed lately, by name, while their own backoff lasts."""
    held = state.get("held") or {}
    return {n: v for n, v in held.items() if float(v.get("next_try", 0)) > now}


def due(p: Platform, app: str, now: float, *, with_held: bool = False) -> list[str] | None:
    """The names to ask a certificate for now, or None; names held back after a failed validation
    are left out until their backoff ends (or `with_held`)."""
    state = domains.get_acme(p.store, app)
    if state is None:
        return None
    held = () if with_held else held_back(state, now)
    names = [n for n in eligible([d.domain for d in domains.list_domains(p.store, app)]) if n not in held]
    if not names:
        return None
    cert = domains.get_cert(p.store, app)
    if cert is None or not cert.get("auto"):
        return names
    if any(not tls.covers(list(cert.get("names", [])), n) for n in names):
        return names
    if float(cert.get("not_after", 0)) - now <= p.settings.acme_renew_before:
        return names
    return None


def droppable(p: Platform, old: dict[str, Any] | None, names: list[str], exc: AcmeError, now: float) -> bool:
    """Whether the order may go on without the names that failed validation: some names remain, and
    none of the failed ones is covered by a working certificate with half its renewal window left
    (a narrower certificate must not replace it; until then, a renewal fails as a whole)."""
    failed = set(exc.failed)
    if not failed or not failed < set(names):
        return False
    working = old is not None and float(old.get("not_after", 0)) > now + p.settings.acme_renew_before / 2
    return not (
        working and old is not None and any(tls.covers(list(old.get("names", [])), n) for n in failed)
    )


def _locked(p: Platform, app: str) -> AppLock:
    lock = AppLock(p.store, app, owner=ACTOR)
    lock.acquire(p.settings.lock_wait)
    return lock


def _answer(p: Platform, app: str, mine: set[str], tokens: dict[str, str]) -> None:
    """Publish `tokens` (or, with {}, take back this issuance's own ones) and switch the router."""
    with _locked(p, app):
        current = domains.get_challenges(p.store, app)
        previous = dict(current)
        for token in mine:
            current.pop(token, None)
        current.update(tokens)
        mine.clear()
        mine.update(tokens)
        domains.set_challenges(p.store, app, current)
        try:
            pipeline.republish(p, app)
        except BaseException:
            domains.set_challenges(p.store, app, previous)
            raise


def _record(info: tls.CertInfo) -> dict[str, Any]:
    return {
        "chain": info.cert.chain,
        "key": info.cert.key,
        "names": list(info.names),
        "subject": info.subject,
        "issuer": info.issuer,
        "not_after": info.not_after,
        "fingerprint": info.fingerprint,
        "by": ACTOR,
        "auto": True,
        "created": time.time(),
    }


def _install(p: Platform, app: str, info: tls.CertInfo) -> bool:
    """Store and serve the new certificate; False if certs:auto was turned off meanwhile."""
    with _locked(p, app):
        if domains.get_acme(p.store, app) is None:
            return False
        previous = domains.get_cert(p.store, app)
        domains.set_cert(p.store, app, _record(info))
        try:
            pipeline.republish(p, app)
        except BaseException:
            domains.set_cert(p.store, app, previous)  # the one that served keeps serving
            raise
        return True


def _failed(p: Platform, app: str, what: str, exc: DeisError) -> float:
    state = domains.get_acme(p.store, app)
    if state is None:
        return 0.0
    failures = int(state.get("failures", 0)) + 1
    s = p.settings
    delay = float(min(s.acme_retry_min * 2 ** min(failures - 1, 30), s.acme_retry_max))
    state.update(failures=failures, next_try=time.time() + delay, error=str(exc))
    domains.set_acme(p.store, app, state)
    events.record(
        p.store,
        app,
        ACTOR,
        f"certs:auto {what} failed: {exc}; the current certificate stays; next try in {delay:.0f}s",
    )
    return delay


def _hold(p: Platform, app: str, exc: AcmeError) -> None:
    """Back off the names that failed validation, each on its own, and say so."""
    state = domains.get_acme(p.store, app)
    if state is None:
        return
    held = dict(state.get("held") or {})
    s = p.settings
    for name in exc.failed:
        failures = int((held.get(name) or {}).get("failures", 0)) + 1
        delay = float(min(s.acme_retry_min * 2 ** min(failures - 1, 30), s.acme_retry_max))
        held[name] = {"failures": failures, "next_try": time.time() + delay, "error": str(exc)}
        events.record(
            p.store, app, ACTOR, f"certs:auto could not validate {name}: {exc}; the certificate goes"
            f" on without it for now (next try in {delay:.0f}s)"
        )  # fmt: skip
    state["held"] = held
    domains.set_acme(p.store, app, state)


def _issue(p: Platform, app: str, names: list[str]) -> tls.CertInfo:
    mine: set[str] = set()
    try:
        cert = account(p).issue(names, lambda tokens: _answer(p, app, mine, tokens))
        return tls.load(cert.chain, cert.key)
    finally:
        if mine:  # the answers were published and could not be taken back by the client
            try:
                _answer(p, app, mine, {})
            except DeisError as exc:
                log.warning("could not take back %s's ACME challenges: %s", app, exc)


def _succeeded(p: Platform, app: str, info: tls.CertInfo, what: str) -> None:
    state = domains.get_acme(p.store, app)
    if state is not None:
        current = {d.domain for d in domains.list_domains(p.store, app)}
        held = {
            n: v
            for n, v in (state.get("held") or {}).items()
            if n in current and not tls.covers(info.names, n)
        }
        state.update(failures=0, next_try=0, error="", held=held)
        domains.set_acme(p.store, app, state)
    verb = "renewed" if what == "renewal" else "issued"
    expires = time.strftime("%Y-%m-%d", time.gmtime(info.not_after))
    names = ", ".join(info.names)
    message = f"certs:auto {verb} a certificate for {names} (issuer {info.issuer}, expires {expires})"
    events.record(p.store, app, ACTOR, message)


def ensure(p: Platform, app: str, *, force: bool = False) -> bool:
    """Issue or renew APP's certificate if due (`force`: past every backoff). AcmeError, after it
    was recorded, if that failed; names that failed validation are left out when `droppable`."""
    with _busy_guard:
        busy = _busy.setdefault(app, threading.Lock())
    with busy:
        now = time.time()
        names = due(p, app, now, with_held=force)
        state = domains.get_acme(p.store, app)
        if names is None or state is None:
            return False
        if not force and now < float(state.get("next_try", 0)):
            return False
        old = domains.get_cert(p.store, app)
        renewing = old is not None and old.get("auto") and all(tls.covers(old["names"], n) for n in names)
        what = "renewal" if renewing else "issuance"
        try:
            try:
                info = _issue(p, app, names)
            except AcmeError as exc:
                if not droppable(p, old, names, exc, now):
                    raise
                _hold(p, app, exc)
                rest = due(p, app, now)  # without them; None if the current certificate does
                if rest is None:
                    return False
                info = _issue(p, app, rest)
            if not _install(p, app, info):
                return False
        except DeisError as exc:  # the ACME server, a bad chain, nginx refusing it, etcd
            _failed(p, app, what, exc)
            raise exc if isinstance(exc, AcmeError) else AcmeError(str(exc)) from exc
        _succeeded(p, app, info, what)
        return True


def _next_wait(p: Platform, now: float) -> float:
    """Until the next regular look, or sooner if an app's backoff ends before it."""
    wait = p.settings.acme_check_interval
    for app in domains.acme_apps(p.store):
        state = domains.get_acme(p.store, app) or {}
        tries = [float(state.get("next_try", 0))]
        tries += [float(v.get("next_try", 0)) for v in (state.get("held") or {}).values()]
        for next_try in tries:
            if next_try > now:
                wait = min(wait, next_try - now)
    return max(wait, 0.05)


def clear_stale(p: Platform) -> None:
    """Take back the challenge answers an appliance stopped mid-issuance left in etcd (and so in the
    router); an issuance this process runs keeps its own."""
    for app in p.store.children("apps"):
        if not domains.get_challenges(p.store, app):
            continue
        with _busy_guard:
            busy = _busy.setdefault(app, threading.Lock())
        if not busy.acquire(blocking=False):
            continue
        try:
            with _locked(p, app):
                domains.set_challenges(p.store, app, {})
                pipeline.republish(p, app)
        finally:
            busy.release()


def run(p: Platform, stop: threading.Event) -> None:
    stale = True
    while not stop.is_set():
        wait = p.settings.acme_check_interval
        try:
            if stale:
                clear_stale(p)
                stale = False
            for app in domains.acme_apps(p.store):
                if stop.is_set():
                    return
                try:
                    ensure(p, app)
                except DeisError as exc:
                    log.warning("certs:auto for %s: %s", app, exc)
            wait = _next_wait(p, time.time())
        except DeisError as exc:  # etcd away: look again soon
            log.warning("certs:auto: %s", exc)
            wait = min(wait, 5.0)
        except Exception:
            log.exception("certs:auto loop")
            wait = min(wait, 30.0)
        p.acme_wake.wait(wait)
        p.acme_wake.clear()


def start_thread(p: Platform) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run, args=(p, stop), name="acme", daemon=True).start()
    return stop
