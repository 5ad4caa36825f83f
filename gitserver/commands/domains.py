"""domains, certs and router: what the router serves for an app besides APP.<platform domain>.

Every change takes the app's lock, is stored in etcd, then the app's router block is rendered again
with its running endpoints (pipeline.republish). If nginx refuses the result, the stored change is
undone, the app keeps its last good block, and the command fails with nginx's message.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from appliance import pipeline
from core.errors import UsageError, ValidationError
from gitserver.commands.base import Context, command, when
from releaser import domains, events
from releaser.apps import App
from routerconf import site, tls


def _apply(
    ctx: Context, app: App, change: Callable[[], object], undo: Callable[[], object], what: str
) -> None:
    """Under the app's lock: store `change`, switch the router; on failure `undo` and re-raise."""
    with ctx.lock(app.name):
        change()
        try:
            ctx.out.step("Switching the router")
            pipeline.republish(ctx.platform, app.name)
        except BaseException:
            undo()
            raise
    events.record(ctx.store, app.name, ctx.user.name, what)


# -- domains --------------------------------------------------------------------------------------
@command(
    "domains",
    "list an app's custom domains",
    app=True,
    aliases=("domains:list",),
    examples=["ssh deis domains --app myapp"],
)
def domains_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    items = domains.list_domains(ctx.store, app.name)
    data = [{"domain": d.domain, "by": d.by, "created": when(d.created)} for d in items]
    ctx.show(
        data,
        ["DOMAIN", "BY", "CREATED"],
        [[d["domain"], d["by"], d["created"]] for d in data],
        title=f"{app.name} Domains",
    )
    return 0


@command(
    "domains:add",
    "route a custom domain (or a wildcard like *.example.com) to an app",
    app=True,
    args=lambda p: p.add_argument("domain"),
    examples=["ssh deis domains:add www.example.com --app myapp"],
)
def domains_add(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    domain = site.check_domain(args.domain, ctx.settings.domain)
    ctx.out.step(f"Adding {domain} to {app.name}")
    _apply(
        ctx,
        app,
        lambda: domains.add_domain(ctx.store, app.name, domain, ctx.user.name),
        lambda: domains.remove_domain(ctx.store, app.name, domain),
        f"{ctx.user.name} added domain {domain}",
    )
    cert = domains.get_cert(ctx.store, app.name)
    if domains.get_acme(ctx.store, app.name) is not None and not domain.startswith("*."):
        ctx.platform.acme_wake.set()  # the certs:auto loop asks for a certificate covering it now
        ctx.out.detail(f"certs:auto: a certificate covering {domain} is being requested (see certs, logs)")
    elif cert is not None and not tls.covers(cert.get("names", []), domain):
        ctx.out.detail(f"note: {app.name}'s certificate does not cover {domain}; https uses the platform's")
    ctx.out.step(f"done, {domain} routes to {app.name}")
    return 0


@command(
    "domains:remove",
    "stop routing a custom domain to an app",
    app=True,
    args=lambda p: p.add_argument("domain"),
    examples=["ssh deis domains:remove www.example.com --app myapp"],
)
def domains_remove(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    domain = site.check_domain(args.domain, ctx.settings.domain)
    removed: list[domains.Domain] = []

    def undo() -> None:
        for record in removed:
            domains.restore_domain(ctx.store, app.name, record)

    ctx.out.step(f"Removing {domain} from {app.name}")
    _apply(
        ctx,
        app,
        lambda: removed.append(domains.remove_domain(ctx.store, app.name, domain)),
        undo,
        f"{ctx.user.name} removed domain {domain}",
    )
    ctx.out.step(f"done, {domain} no longer routes to {app.name}")
    return 0


# -- certs ----------------------------------------------------------------------------------------
def _cert_row(cert: dict[str, Any]) -> dict[str, object]:
    return {
        "names": list(cert.get("names", [])),
        "subject": cert.get("subject", ""),
        "issuer": cert.get("issuer", ""),
        "expires": when(float(cert.get("not_after", 0))),
        "fingerprint": cert.get("fingerprint", ""),
        "auto": bool(cert.get("auto")),
        "by": cert.get("by", ""),
        "created": when(float(cert.get("created", 0))),
    }


def _not_auto(ctx: Context, app: App) -> None:
    if domains.get_acme(ctx.store, app.name) is not None:
        raise ValidationError(
            f"{app.name}'s certificates are automatic (certs:auto): turn that off first (certs:auto:off)"
        )


@command(
    "certs",
    "show an app's TLS certificate",
    app=True,
    aliases=("certs:list",),
    examples=["ssh deis certs --app myapp"],
)
def certs_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    cert = domains.get_cert(ctx.store, app.name)
    data = [_cert_row(cert)] if cert else []
    rows = [
        [", ".join(d["names"]), str(d["issuer"]), str(d["expires"]), "auto" if d["auto"] else "manual"]  # type: ignore[arg-type]
        for d in data
    ]
    ctx.show(data, ["NAMES", "ISSUER", "EXPIRES", "HOW"], rows, title=f"{app.name} Certificates")
    state = None if ctx.json else domains.get_acme(ctx.store, app.name)
    if state is not None:
        ctx.print(f"certs:auto is on (since {when(float(state.get('since', 0)))}, by {state.get('by', '')})")
        if state.get("error"):
            ctx.print(
                f"last attempt failed: {state['error']}; next try {when(float(state.get('next_try', 0)))}"
            )
        for name, held in sorted((state.get("held") or {}).items()):
            ctx.print(
                f"not covered yet: {name}: {held.get('error', '')}; next try {when(float(held['next_try']))}"
            )
    return 0


@command(
    "certs:add",
    "add an app's TLS certificate: PEM chain (leaf first) and key on stdin; it must cover its domains",
    app=True,
    stdin=True,
    examples=["cat cert.pem chain.pem key.pem | ssh deis certs:add --app myapp"],
)
def certs_add(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    _not_auto(ctx, app)
    try:
        text = ctx.stdin.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValidationError("the certificate input must be PEM text") from exc
    chain, key = tls.split_bundle(text)
    info = tls.load(chain, key)
    names = domains.list_domains(ctx.store, app.name)
    if not names:
        raise ValidationError(f"{app.name} has no custom domain: add one first (domains:add DOMAIN)")
    uncovered = [d.domain for d in names if not tls.covers(info.names, d.domain)]
    if uncovered:
        raise ValidationError(
            f"the certificate (for {', '.join(info.names)}) does not cover {', '.join(uncovered)}"
        )
    record = {
        "chain": info.cert.chain,
        "key": info.cert.key,
        "names": list(info.names),
        "subject": info.subject,
        "issuer": info.issuer,
        "not_after": info.not_after,
        "fingerprint": info.fingerprint,
        "by": ctx.user.name,
        "created": time.time(),
    }
    previous = domains.get_cert(ctx.store, app.name)
    ctx.out.step(f"Adding a certificate for {', '.join(info.names)} to {app.name}")
    ctx.out.detail(f"expires {when(info.not_after)}, SHA-256 {info.fingerprint}")
    _apply(
        ctx,
        app,
        lambda: domains.set_cert(ctx.store, app.name, record),
        lambda: domains.set_cert(ctx.store, app.name, previous),
        f"{ctx.user.name} added a certificate for {', '.join(info.names)}",
    )
    ctx.out.step(f"done, https for {app.name}'s domains uses it")
    return 0


@command(
    "certs:remove",
    "remove an app's TLS certificate (its domains fall back to the platform's)",
    app=True,
    examples=["ssh deis certs:remove --app myapp"],
)
def certs_remove(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    _not_auto(ctx, app)
    previous = domains.get_cert(ctx.store, app.name)
    if previous is None:
        raise ValidationError(f"{app.name} has no certificate")
    ctx.out.step(f"Removing {app.name}'s certificate")
    _apply(
        ctx,
        app,
        lambda: domains.set_cert(ctx.store, app.name, None),
        lambda: domains.set_cert(ctx.store, app.name, previous),
        f"{ctx.user.name} removed the certificate",
    )
    ctx.out.step("done")
    return 0


# -- router settings -------------------------------------------------------------------------------
@command(
    "router",
    "list an app's router settings (and the keys router:set takes)",
    app=True,
    aliases=("router:list",),
    examples=["ssh deis router --app myapp"],
)
def router_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    options = domains.get_options(ctx.store, app.name)
    rows = [[k, options.get(k, "-"), desc] for k, (_, desc) in sorted(site.OPTIONS.items())]
    ctx.show(options, ["KEY", "VALUE", "MEANING"], rows, title=f"{app.name} Router")
    return 0


def _changed_options(ctx: Context, app: App, changes: dict[str, str | None], what: str) -> None:
    with ctx.lock(app.name):
        previous = domains.get_options(ctx.store, app.name)
        new = dict(previous)
        for key, value in changes.items():
            if value is None:
                if key not in new:
                    raise ValidationError(f"router setting {key} is not set")
                del new[key]
            else:
                new[key] = value
        domains.set_options(ctx.store, app.name, new)
        try:
            ctx.out.step("Switching the router")
            pipeline.republish(ctx.platform, app.name)
        except BaseException:
            domains.set_options(ctx.store, app.name, previous)
            raise
    events.record(ctx.store, app.name, ctx.user.name, what)


@command(
    "router:set",
    "set router settings: " + ", ".join(sorted(site.OPTIONS)),
    app=True,
    args=lambda p: p.add_argument("assignments", nargs="+", metavar="KEY=VALUE"),
    examples=[
        "ssh deis router:set body_size=10m read_timeout=120s whitelist=10.0.0.0/8,192.168.1.5 --app myapp"
    ],
)
def router_set(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    changes: dict[str, str | None] = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        changes[key] = site.check_option(key, value)
    ctx.out.step(f"Setting {', '.join(f'{k}={v}' for k, v in changes.items())} on {app.name}")
    _changed_options(ctx, app, changes, f"{ctx.user.name} set router {', '.join(changes)}")
    ctx.out.step("done")
    return 0


@command(
    "router:unset",
    "unset router settings (back to the defaults)",
    app=True,
    args=lambda p: p.add_argument("keys", nargs="+", metavar="KEY"),
    examples=["ssh deis router:unset maintenance --app myapp"],
)
def router_unset(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    for key in args.keys:
        if key not in site.OPTIONS:
            site.check_option(key, "")  # raises the unknown-key message
    ctx.out.step(f"Unsetting {', '.join(args.keys)} on {app.name}")
    _changed_options(
        ctx, app, dict.fromkeys(args.keys), f"{ctx.user.name} unset router {', '.join(args.keys)}"
    )
    ctx.out.step("done")
    return 0
