"""What the router serves for one app besides its endpoints: custom domains, a certificate, settings.

    Site(domains, cert, options)   the per-app input of `Router.publish`; pure data, already validated
    check_domain(domain, platform) a custom domain's syntax and the platform's reserved names
    check_option(key, value)       one router setting, normalized (`router:set KEY=VALUE`)

Custom domains are lowercase hostnames (labels of letters, digits and inner dashes, at most 253
characters, at least two labels). A wildcard is allowed as the whole leftmost label only
(`*.example.com`): nginx matches it against any name ending in `.example.com`, and an exact name
(another app's `www.example.com`) wins over it. The platform domain and every name under it are
refused: `APP.<platform domain>` always routes to APP and unknown names there get the 404 page.

Every value this module accepts is made of characters the renderer lets through, so rendering is the
second line of defence, not the first.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

from core.errors import ValidationError

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE: Final = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+")


@dataclass(frozen=True)
class Cert:
    """A PEM certificate chain (leaf first) and its private key, as the user gave them (checked)."""

    chain: str
    key: str


# ACME HTTP-01 (RFC 8555 8.3): a token is base64url; its key authorization is TOKEN.THUMBPRINT.
TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
KEY_AUTH_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")
CHALLENGE_PATH: Final = "/.well-known/acme-challenge/"


@dataclass(frozen=True)
class Site:
    domains: tuple[str, ...] = ()
    cert: Cert | None = None
    options: dict[str, str] = field(default_factory=dict)
    # Pending ACME HTTP-01 challenges, {token: key authorization}: the router answers exactly these.
    challenges: dict[str, str] = field(default_factory=dict)


def check_challenge(token: str, key_auth: str) -> tuple[str, str]:
    """A pending challenge as the router serves it; ValidationError if either part is malformed."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise ValidationError(f"invalid ACME challenge token {token!r}")
    if not isinstance(key_auth, str) or not KEY_AUTH_RE.fullmatch(key_auth):
        raise ValidationError(f"invalid ACME key authorization for token {token}")
    if not key_auth.startswith(token + "."):
        raise ValidationError(f"the ACME key authorization does not belong to token {token}")
    return token, key_auth


def check_domain(domain: str, platform_domain: str) -> str:
    """The custom domain, lowercased; ValidationError if it is not a hostname or is the platform's."""
    d = domain.lower().removesuffix(".") if isinstance(domain, str) else ""
    if len(d) > 253:
        d = ""
    if not HOSTNAME_RE.fullmatch(d):
        raise ValidationError(
            f"invalid domain {domain!r}: use a hostname like www.example.com (or *.example.com),"
            " lowercase letters, digits, dots and dashes"
        )
    if d.rsplit(".", 1)[-1].isdigit() or d.rsplit(".", 1)[-1].startswith("0x"):
        # 10.0.0.1, 127.1, 0x7f.1: an address (no top-level domain is all digits), which would take
        # the router's own addresses (and every request that names no app) for this app.
        raise ValidationError(f"invalid domain {domain!r}: an IP address is not a domain; use a hostname")
    platform = platform_domain.lower()
    base = d[2:] if d.startswith("*.") else d
    if (
        d == platform
        or d.endswith("." + platform)
        or (d.startswith("*.") and (platform == base or platform.endswith("." + base)))
    ):
        raise ValidationError(
            f"{domain} is the platform's own domain ({platform}): every app already answers at APP.{platform}"
        )
    return d


# -- router settings (router:set KEY=VALUE) -----------------------------------------------------
SIZE_RE: Final = re.compile(r"([0-9]{1,6})([kmg]?)")
DURATION_RE: Final = re.compile(r"([0-9]{1,6})(ms|s|m|h)?")
_TRUE = ("true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")
HSTS_DEFAULT_MAX_AGE: Final = 31536000
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
# The longest an app may make the router wait on it: a held connection counts against the app's cap.
MAX_PROXY_TIMEOUT: Final = 3600


def _bool(key: str, value: str) -> str:
    v = value.strip().lower()
    if v in _TRUE:
        return "true"
    if v in _FALSE:
        return "false"
    raise ValidationError(f"{key} must be true or false, not {value!r}")


def _size(key: str, value: str) -> str:
    m = SIZE_RE.fullmatch(value.strip().lower())
    if not m:
        raise ValidationError(f"{key} must be a size like 1m, 512k or 2g (0 means unlimited), not {value!r}")
    number, unit = int(m[1]), m[2]
    if number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit] > 64 << 30:
        raise ValidationError(f"{key} may be at most 64g")
    return f"{number}{unit}"


def _duration(key: str, value: str, most: float) -> str:
    m = DURATION_RE.fullmatch(value.strip().lower())
    if not m:
        raise ValidationError(f"{key} must be a duration like 30s, 500ms or 5m, not {value!r}")
    number, unit = int(m[1]), m[2] or "s"
    seconds = number * _UNIT_SECONDS[unit]
    if seconds <= 0 or seconds > most:
        raise ValidationError(f"{key} must be more than 0 and at most {most:.0f}s")
    return f"{number}{unit}"


def _allowlist(key: str, value: str) -> str:
    nets = []
    for item in value.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValidationError(f"{key}: {item!r} is not an IP address or CIDR like 10.0.0.0/8") from exc
        if str(net) not in nets:
            nets.append(str(net))
    if not nets:
        raise ValidationError(f"{key} needs at least one address or CIDR (unset it to allow everyone)")
    return ",".join(nets)


def _hsts(key: str, value: str) -> str:
    v = value.strip().lower()
    if v.isdigit() and len(v) <= 9:
        return str(int(v))  # a max-age in seconds; 0 tells browsers to forget the policy
    return str(HSTS_DEFAULT_MAX_AGE) if _bool(key, value) == "true" else "false"


# key -> (validator, what it does); the keys follow Deis v1's router (DEIS_WHITELIST etc.).
OPTIONS: Final = {
    "body_size": (_size, "client_max_body_size: the largest request body (default 100m)"),
    "connect_timeout": (
        lambda k, v: _duration(k, v, 75),
        "proxy_connect_timeout: to open a connection to the app (default 10s, at most 75s)",
    ),
    "read_timeout": (
        lambda k, v: _duration(k, v, MAX_PROXY_TIMEOUT),
        "proxy_read_timeout: between two reads from the app (default 1200s, at most 3600s)",
    ),
    "send_timeout": (
        lambda k, v: _duration(k, v, MAX_PROXY_TIMEOUT),
        "proxy_send_timeout: between two writes to the app (default 1200s, at most 3600s)",
    ),
    "whitelist": (_allowlist, "only these IPs/CIDRs may connect (comma-separated); others get 403"),
    "maintenance": (_bool, "true: answer every request with a 503 maintenance page"),
    "https_enforce": (_bool, "true: redirect http:// to https:// (301)"),
    "hsts": (_hsts, "true or a max-age in seconds: send Strict-Transport-Security over https"),
}


def check_option(key: str, value: str) -> str:
    """One router setting, normalized; ValidationError naming the valid keys or the valid form."""
    if key not in OPTIONS:
        raise ValidationError(f"unknown router setting {key!r}: use one of {', '.join(sorted(OPTIONS))}")
    if not isinstance(value, str) or "\n" in value or len(value) > 4096:
        raise ValidationError(f"{key}: the value must be one line")
    return OPTIONS[key][0](key, value)


def check_options(options: dict[str, str]) -> dict[str, str]:
    return {k: check_option(k, v) for k, v in sorted(options.items())}


def clamp_stored(options: dict[str, str]) -> dict[str, str]:
    """Settings stored by an older platform that allowed longer timeouts, brought down to the cap
    (so they still render); anything else is returned as it is, for `check_options`."""
    out = dict(options)
    for key in ("read_timeout", "send_timeout"):
        m = DURATION_RE.fullmatch(str(out.get(key, "")).strip().lower())
        if m and int(m[1]) * _UNIT_SECONDS[m[2] or "s"] > MAX_PROXY_TIMEOUT:
            out[key] = f"{MAX_PROXY_TIMEOUT}s"
    return out
