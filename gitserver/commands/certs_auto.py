"""certs:auto and certs:auto:off: an app's certificate from the platform's ACME server (HTTP-01).

The work is appliance.acme's (the renewal loop runs the same code); these only switch it and ask for
the first certificate at once, so the user sees how it went.
"""

from __future__ import annotations

import argparse
import time

from appliance import acme
from core.errors import AcmeError, ValidationError
from gitserver.commands.base import Context, command, when
from releaser import domains, events


@command(
    "certs:auto",
    "get and renew a certificate for an app's custom domains from ACME (Let's Encrypt by default)",
    app=True,
    examples=["ssh deis certs:auto --app myapp"],
)
def certs_auto(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    with ctx.lock(app.name):
        if domains.get_acme(ctx.store, app.name) is None:
            domains.set_acme(
                ctx.store,
                app.name,
                {"by": ctx.user.name, "since": time.time(), "failures": 0, "next_try": 0, "error": ""},
            )
            events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} turned certs:auto on")
    ctx.out.step(f"certs:auto is on for {app.name} (ACME directory {ctx.settings.acme_directory})")
    names = [d.domain for d in domains.list_domains(ctx.store, app.name)]
    wildcards = [n for n in names if n.startswith("*.")]
    if wildcards:
        ctx.out.detail(
            f"not covered (a wildcard needs DNS-01, which certs:auto does not do): {', '.join(wildcards)}"
        )
    wanted = acme.eligible(names)
    if not wanted:
        ctx.out.step(f"done, a certificate is requested when {app.name} gets a domain (domains:add)")
        return 0
    if ctx.settings.http_port != 80:
        ctx.out.detail(
            "note: ACME servers check http://DOMAIN/ on port 80;"
            f" the router listens on {ctx.settings.http_port}"
        )
    ctx.out.step(f"Requesting a certificate for {', '.join(wanted)}")
    try:
        issued = acme.ensure(ctx.platform, app.name, force=True)
    except AcmeError as exc:
        raise AcmeError(f"{exc} (certs:auto stays on and tries again later)") from exc
    cert = domains.get_cert(ctx.store, app.name) or {}
    if issued:
        ctx.out.detail(f"issuer {cert.get('issuer', '')}, expires {when(float(cert.get('not_after', 0)))}")
        ctx.out.step(f"done, https for {app.name}'s domains uses it; it is renewed before it expires")
    else:
        ctx.out.step(f"done, the certificate (expires {when(float(cert.get('not_after', 0)))}) is current")
    return 0


@command(
    "certs:auto:off",
    "stop getting and renewing an app's certificate by ACME (the current one keeps serving)",
    app=True,
    examples=["ssh deis certs:auto:off --app myapp"],
)
def certs_auto_off(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args)
    with ctx.lock(app.name):
        if domains.get_acme(ctx.store, app.name) is None:
            raise ValidationError(f"certs:auto is not on for {app.name}")
        domains.set_acme(ctx.store, app.name, None)
    events.record(ctx.store, app.name, ctx.user.name, f"{ctx.user.name} turned certs:auto off")
    ctx.out.step(f"certs:auto is off for {app.name}")
    if domains.get_cert(ctx.store, app.name) is not None:
        ctx.out.detail("its certificate keeps serving until it expires (certs:remove takes it away)")
    return 0
