"""An app's router state in etcd: custom domains, its certificate, its router settings.

    domains/KEY               {"app": APP}        the index: a domain belongs to one app (create-only)
    apps/APP/domains/KEY      {"domain": D, "by": USER, "created": ts}
    apps/APP/cert             {"chain": PEM, "key": PEM, "names": [...], "not_after": ts,
                               "fingerprint": "AB:CD:..", "subject": "...", "by": USER, "created": ts}
    apps/APP/router           {"body_size": "10m", ...}   (validated by routerconf.site.check_option)
    apps/APP/acme             {"by": USER, "since": ts, "failures": n, "next_try": ts, "error": "..."}
                              certs:auto is on (absent: off); the renewal loop's backoff state
    apps/APP/challenges       {TOKEN: KEY_AUTHORIZATION}   pending ACME HTTP-01 answers (the router's)

KEY is the domain with `*` written as `_` (a character no hostname has), so `*.example.com` and
`example.com` are different keys. Values are checked by the callers (routerconf.site, routerconf.tls);
this module only keeps them and makes the one-app-per-domain rule atomic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from core.errors import Conflict, NotFound
from releaser.store import Store


@dataclass(frozen=True)
class Domain:
    domain: str
    by: str
    created: float


@dataclass(frozen=True)
class SiteState:
    """What the router needs of an app besides its endpoints (plain data; the pipeline converts it)."""

    domains: list[str] = field(default_factory=list)
    cert: dict[str, Any] | None = None
    options: dict[str, str] = field(default_factory=dict)
    challenges: dict[str, str] = field(default_factory=dict)


def _key(domain: str) -> str:
    if "/" in domain or ".." in domain or not domain:
        raise NotFound(f"no domain {domain!r}")  # never a path outside the app's keys
    # "d." first: etcd v2 hides keys that start with "_", which "*.example.com" would otherwise.
    return "d." + domain.replace("*", "_")


# -- domains -------------------------------------------------------------------------------------
def list_domains(store: Store, app: str) -> list[Domain]:
    items = store.children(f"apps/{app}/domains")
    found = [
        Domain(str(d["domain"]), str(d.get("by", "")), float(d.get("created", 0)))
        for d in items.values()
        if d
    ]
    return sorted(found, key=lambda d: d.domain)


def owner(store: Store, domain: str) -> str | None:
    data = store.get(f"domains/{_key(domain)}")
    return None if data is None else str(data["app"])


def add_domain(store: Store, app: str, domain: str, by: str) -> Domain:
    """Claim `domain` for `app`; Conflict if any app (this one too) has it already."""
    if not store.create(f"domains/{_key(domain)}", {"app": app}):
        holder = owner(store, domain)
        if holder == app:
            raise Conflict(f"{domain} is already a domain of {app}")
        raise Conflict(f"{domain} is already used by another app")
    record = Domain(domain, by, time.time())
    store.put(f"apps/{app}/domains/{_key(domain)}", {"domain": domain, "by": by, "created": record.created})
    return record


def remove_domain(store: Store, app: str, domain: str) -> Domain:
    """Give `domain` up; NotFound if it is not one of `app`'s. Returns what was removed."""
    data = store.get(f"apps/{app}/domains/{_key(domain)}")
    if data is None:
        raise NotFound(f"{domain} is not a domain of {app}")
    store.delete(f"apps/{app}/domains/{_key(domain)}")
    store.delete(f"domains/{_key(domain)}", if_value={"app": app})
    return Domain(domain, str(data.get("by", "")), float(data.get("created", 0)))


def restore_domain(store: Store, app: str, record: Domain) -> None:
    """Put back a domain `remove_domain` took away (a router change that failed)."""
    if store.create(f"domains/{_key(record.domain)}", {"app": app}):
        store.put(
            f"apps/{app}/domains/{_key(record.domain)}",
            {"domain": record.domain, "by": record.by, "created": record.created},
        )


def forget_app(store: Store, app: str) -> None:
    """Free every domain of `app` (when the app is destroyed); its own keys go with apps/APP."""
    for d in list_domains(store, app):
        store.delete(f"domains/{_key(d.domain)}", if_value={"app": app})


# -- the certificate -----------------------------------------------------------------------------
def get_cert(store: Store, app: str) -> dict[str, Any] | None:
    data = store.get(f"apps/{app}/cert")
    return data if isinstance(data, dict) else None


def set_cert(store: Store, app: str, cert: dict[str, Any] | None) -> None:
    if cert is None:
        store.delete(f"apps/{app}/cert")
    else:
        store.put(f"apps/{app}/cert", cert)


# -- router settings -----------------------------------------------------------------------------
def get_options(store: Store, app: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (store.get(f"apps/{app}/router") or {}).items()}


def set_options(store: Store, app: str, options: dict[str, str]) -> None:
    if options:
        store.put(f"apps/{app}/router", dict(sorted(options.items())))
    else:
        store.delete(f"apps/{app}/router")


# -- automatic certificates (certs:auto) --------------------------------------------------------
def get_acme(store: Store, app: str) -> dict[str, Any] | None:
    data = store.get(f"apps/{app}/acme")
    return data if isinstance(data, dict) else None


def set_acme(store: Store, app: str, state: dict[str, Any] | None) -> None:
    if state is None:
        store.delete(f"apps/{app}/acme")
    else:
        store.put(f"apps/{app}/acme", state)


def acme_apps(store: Store) -> list[str]:
    """The apps with certs:auto on."""
    return sorted(name for name in store.children("apps") if get_acme(store, name) is not None)


def get_challenges(store: Store, app: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (store.get(f"apps/{app}/challenges") or {}).items()}


def set_challenges(store: Store, app: str, challenges: dict[str, str]) -> None:
    if challenges:
        store.put(f"apps/{app}/challenges", dict(challenges))
    else:
        store.delete(f"apps/{app}/challenges")


def site(store: Store, app: str) -> SiteState:
    return SiteState(
        domains=[d.domain for d in list_domains(store, app)],
        cert=get_cert(store, app),
        options=get_options(store, app),
        challenges=get_challenges(store, app),
    )
