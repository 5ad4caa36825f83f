"""Rendering the router's nginx configuration: pure functions from names and ports to text.

Every value a template prints passes `_finalize`, which lets through only ints and strings made of
hostname/path characters; anything else (spaces, `;`, braces, quotes, `$`, newlines, ...) raises
`RouterError`, so no input can add an nginx directive. The inputs are also checked before rendering,
so the usual failure is a clear message about the bad input, and `_finalize` is the backstop.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import jinja2

from core.errors import DeisError, RouterError
from core.names import check_app
from core.settings import Settings
from routerconf import tls
from routerconf.site import (
    CHALLENGE_PATH,
    KEY_AUTH_RE,
    Cert,
    Site,
    check_challenge,
    check_options,
    clamp_stored,
)
from routerconf.site import check_domain as check_domain_custom

TEMPLATES: Final = Path(__file__).parent / "templates"
# Where the certificate files live, relative to the nginx dir (see routerconf.router). The platform's
# name starts with `_`, which no app name does, so no app's files can ever be mistaken for it.
CERT_DIGEST: Final = 16
PLATFORM_CERT: Final = ("certs/_platform.crt", "certs/_platform.key")

# What a template may print: hostnames (a leading `*.` for wildcards), "10.1.2.3:5000", CIDRs (also
# IPv6, which may start with `:`), relative or absolute paths. No spaces, no quotes, no `;{}$#`, no
# newlines: nothing that can end a directive or start a new one.
SAFE_RE: Final = re.compile(r"(?:\*\.)?[A-Za-z0-9_./:][A-Za-z0-9_.:/-]{0,254}")

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
ENDPOINT_RE: Final = re.compile(rf"(?P<host>{_OCTET}(?:\.{_OCTET}){{3}}):(?P<port>[1-9][0-9]{{0,4}})")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Per worker (one worker per core): a proxied request holds two (the client's and the app's).
WORKER_CONNECTIONS: Final = 8192
USER_RE: Final = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class _Auto:
    """Marker: pick the worker user from the current process (see `default_user`)."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Final = _Auto()


class _KeyAuth(str):
    """An ACME key authorization, checked (site.check_challenge): base64url, a dot, base64url. It may
    start with `-`, which SAFE_RE refuses, and is only ever printed inside double quotes."""


def _finalize(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, _KeyAuth) and KEY_AUTH_RE.fullmatch(value):
        return value
    if isinstance(value, str) and SAFE_RE.fullmatch(value):
        return value
    raise RouterError(f"refusing to write {value!r} into the nginx configuration")


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    finalize=_finalize,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def environment() -> jinja2.Environment:
    """The jinja2 environment the templates render in (exposed for tests)."""
    return _env


# -- input checks --------------------------------------------------------------------------------
def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RouterError(f"invalid port {port!r}: use 1-65535")
    return port


def check_endpoint(endpoint: str) -> str:
    m = ENDPOINT_RE.fullmatch(endpoint) if isinstance(endpoint, str) else None
    if not m or int(m["port"]) > 65535:
        raise RouterError(f"invalid endpoint {endpoint!r}: expected IPv4:PORT such as 127.0.0.1:32768")
    return endpoint


def check_domain(domain: str) -> str:
    if not isinstance(domain, str) or len(domain) > 253 or not DOMAIN_RE.fullmatch(domain.lower()):
        raise RouterError(f"invalid platform domain {domain!r}")
    return domain.lower()


def check_user(user: str) -> str:
    if not USER_RE.fullmatch(user):
        raise RouterError(f"invalid nginx worker user {user!r}")
    return user


def default_user() -> str | None:
    """Workers run as www-data when nginx starts as root (nobody if www-data is missing); else as us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("www-data")
    except KeyError:
        return "nobody"
    return "www-data"


# -- rendering -----------------------------------------------------------------------------------
def render_main(
    settings: Settings,
    *,
    user: str | _Auto | None = AUTO,
    includes: Sequence[str] | None = None,
) -> str:
    """nginx.conf. `includes=None` includes `apps/*.conf`; a list includes exactly those paths
    (relative to the directory the config file is in), which is how a candidate is tested."""
    if isinstance(user, _Auto):
        user = default_user()
    https_port = settings.https_port
    return _env.get_template("nginx.conf.j2").render(
        user=check_user(user) if user is not None else None,
        http_port=check_port(settings.http_port),
        https_port=check_port(https_port) if https_port else None,
        platform_cert=PLATFORM_CERT,
        worker_connections=WORKER_CONNECTIONS,
        app_connections=max(1, int(settings.router_app_connections)),
        includes=list(includes) if includes is not None else None,
    )


def cert_files(app: str, cert: Cert) -> tuple[str, str]:
    """Where APP's certificate and key live (relative to the nginx dir). The name carries a hash of
    the content, so a live config never points at a file that a later publish rewrites."""
    digest = hashlib.sha256(f"{cert.chain}\0{cert.key}".encode()).hexdigest()[:CERT_DIGEST]
    return f"certs/{check_app(app)}.{digest}.crt", f"certs/{app}.{digest}.key"


def render_app(
    app: str,
    domain: str,
    endpoints: list[str],
    http_port: int,
    *,
    https_port: int | None = None,
    site: Site | None = None,
) -> str:
    """apps/APP.conf: an upstream over `endpoints` and the app's servers; a 503 page if none.

    One server answers APP.DOMAIN and the custom domains its certificate does not cover (over https
    with the platform certificate); if the app has a certificate, a second server answers the
    domains it covers, with it. `site.options` (router settings) apply to both. Pending ACME
    challenges (`site.challenges`) are answered by nginx itself in both, before anything else (https
    redirects, allow lists, maintenance): the app never sees those paths."""
    check_app(app)
    site = site or Site()
    unique: list[str] = []
    for endpoint in endpoints:
        if check_endpoint(endpoint) not in unique:
            unique.append(endpoint)
    platform = check_domain(domain)
    domains = [check_custom(d, platform) for d in site.domains]
    options = check_options(clamp_stored(dict(site.options)))
    if https_port is not None:
        check_port(https_port)
    cert = site.cert if https_port is not None else None
    covered = [d for d in domains if cert is not None and tls.covers(tls.names_of(cert.chain), d)]
    servers: list[dict[str, object]] = [
        {"names": [f"{app}.{platform}", *(d for d in domains if d not in covered)], "cert": None}
    ]
    if cert is not None and covered:
        servers.append({"names": covered, "cert": cert_files(app, cert)})
    hsts = options.get("hsts", "false")
    challenges = [
        (CHALLENGE_PATH + token, _KeyAuth(key_auth))
        for token, key_auth in (check_challenge(t, k) for t, k in sorted(site.challenges.items()))
    ]
    return _env.get_template("app.conf.j2").render(
        app=app,
        challenges=challenges,
        endpoints=unique,
        http_port=check_port(http_port),
        https_port=https_port,
        servers=servers,
        https_enforce=https_port is not None and options.get("https_enforce") == "true",
        hsts=int(hsts) if https_port is not None and hsts != "false" else None,
        whitelist=options["whitelist"].split(",") if "whitelist" in options else [],
        body_size=options.get("body_size"),
        connect_timeout=options.get("connect_timeout"),
        read_timeout=options.get("read_timeout"),
        send_timeout=options.get("send_timeout"),
        maintenance=options.get("maintenance") == "true",
    )


def check_custom(domain: str, platform: str) -> str:
    """A custom domain as the renderer accepts it (RouterError, not ValidationError: a bug upstream)."""
    try:
        return check_domain_custom(domain, platform)
    except DeisError as exc:
        raise RouterError(str(exc)) from exc
