"""Pure parts of custom domains, certificates and router settings: validation, coverage, rendering.

No nginx runs here; the real-nginx behaviour is in test_routerconf_tls.py."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import RouterError, ValidationError
from routerconf import render_app, tls
from routerconf.render import cert_files
from routerconf.site import Cert, Site, check_domain, check_option


# -- domains ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("www.example.com", "www.example.com"),
        ("WWW.Example.COM", "www.example.com"),
        ("example.com.", "example.com"),
        ("*.example.com", "*.example.com"),
        ("a-b.c0.io", "a-b.c0.io"),
        ("x" * 63 + ".com", "x" * 63 + ".com"),
    ],
)
def test_good_domains(given: str, kept: str) -> None:
    assert check_domain(given, "deis.local") == kept


BAD_DOMAINS = [
    "",
    "localhost",  # one label
    "example",
    "-a.example.com",
    "a-.example.com",
    "a..example.com",
    "a_b.example.com",
    "*example.com",
    "a.*.example.com",
    "*.*.example.com",
    "*",
    "*.com.",
    "x" * 64 + ".com",
    ".".join(["abcdefg"] * 40),
    "a.example.com;",
    "a.example.com; include /etc/passwd",
    "a.example.com\nserver_name b",
    "a.example.com ",
    " a.example.com",
    "a.example.com}",
    "$host.example.com",
    "a.example.com#x",
    "'a.example.com'",
    "../../apps/x",
    "exa mple.com",
    "ex\u00e4mple.com",
]


@pytest.mark.parametrize("bad", BAD_DOMAINS)
def test_bad_domains_rejected(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_domain(bad, "deis.local")


@pytest.mark.parametrize(
    "reserved",
    ["apps.deis.local", "x.apps.deis.local", "a.b.apps.deis.local", "*.apps.deis.local", "*.deis.local"],
)
def test_platform_domain_names_are_refused(reserved: str) -> None:
    """The platform domain, names under it, and wildcards that would catch names under it."""
    with pytest.raises(ValidationError, match="platform's own domain"):
        check_domain(reserved, "apps.deis.local")


def test_a_sibling_of_the_platform_domain_is_fine() -> None:
    assert check_domain("deis.localx.com", "deis.local") == "deis.localx.com"
    assert check_domain("xdeis.local", "deis.local") == "xdeis.local"


# -- router settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "kept"),
    [
        ("body_size", "10M", "10m"),
        ("body_size", "0", "0"),
        ("body_size", "512k", "512k"),
        ("connect_timeout", "5", "5s"),
        ("connect_timeout", "75s", "75s"),
        ("read_timeout", "500ms", "500ms"),
        ("read_timeout", "1h", "1h"),
        ("send_timeout", "10m", "10m"),
        ("whitelist", "127.0.0.1", "127.0.0.1/32"),
        ("whitelist", "10.0.0.1/8, 192.168.1.0/24,::1", "10.0.0.0/8,192.168.1.0/24,::1/128"),
        ("whitelist", "1.2.3.4,1.2.3.4", "1.2.3.4/32"),
        ("maintenance", "ON", "true"),
        ("maintenance", "no", "false"),
        ("https_enforce", "true", "true"),
        ("hsts", "true", "31536000"),
        ("hsts", "300", "300"),
        ("hsts", "0", "0"),
        ("hsts", "off", "false"),
    ],
)
def test_router_settings_are_normalized(key: str, value: str, kept: str) -> None:
    assert check_option(key, value) == kept


BAD_SETTINGS = [
    ("nope", "1"),
    ("body_size", "10 m"),
    ("body_size", "10m; include /etc/passwd"),
    ("body_size", "65g"),
    ("body_size", "-1"),
    ("connect_timeout", "76s"),
    ("connect_timeout", "0"),
    ("read_timeout", "1d"),
    ("read_timeout", "2h"),
    ("send_timeout", "3601s"),
    ("read_timeout", "10s\nreturn 200"),
    ("whitelist", ""),
    ("whitelist", "10.0.0.0/33"),
    ("whitelist", "example.com"),
    ("whitelist", "10.0.0.0/8; allow all"),
    ("whitelist", "all"),
    ("maintenance", "maybe"),
    ("https_enforce", "true;"),
    ("hsts", "forever"),
    ("hsts", "1234567890"),
]


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS)
def test_bad_router_settings_rejected(key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        check_option(key, value)


# -- certificates ----------------------------------------------------------------------------------
def test_load_checks_and_normalizes(test_ca) -> None:
    chain, key = test_ca.issue(["www.example.com", "*.example.org"], rsa_key=True)
    info = tls.load(chain, key)
    assert info.names == ("www.example.com", "*.example.org")
    assert info.subject == "CN=www.example.com"
    assert info.issuer == "CN=deis test CA"
    assert len(info.fingerprint.split(":")) == 32
    assert info.cert.chain.count("BEGIN CERTIFICATE") == 2
    assert info.cert.key.startswith("-----BEGIN PRIVATE KEY-----\n")  # re-serialized as PKCS#8


def test_split_bundle(test_ca) -> None:
    chain, key = test_ca.issue(["www.example.com"])
    assert tls.split_bundle("junk\n" + key + chain + "trailing\n") == (chain, key)
    with pytest.raises(ValidationError, match="exactly one PEM private key"):
        tls.split_bundle(chain)
    with pytest.raises(ValidationError, match="exactly one PEM private key"):
        tls.split_bundle(chain + key + key)
    with pytest.raises(ValidationError, match="no PEM certificate"):
        tls.split_bundle(key)


def test_key_must_match(test_ca) -> None:
    chain, _ = test_ca.issue(["www.example.com"])
    _, other_key = test_ca.issue(["www.example.com"])
    with pytest.raises(ValidationError, match="does not match"):
        tls.load(chain, other_key)


def test_expired_and_future_certificates_refused(test_ca) -> None:
    chain, key = test_ca.issue(["www.example.com"], days=-1, start_days=-10)
    with pytest.raises(ValidationError, match="expired"):
        tls.load(chain, key)
    chain, key = test_ca.issue(["www.example.com"], days=20, start_days=5)
    with pytest.raises(ValidationError, match="not valid before"):
        tls.load(chain, key)
    chain, key = test_ca.issue(["www.example.com"], days=5)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    with pytest.raises(ValidationError, match="expired"):
        tls.load(chain, key, now=later)


@pytest.mark.parametrize(
    ("chain", "key"),
    [("not pem", "not pem"), ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "x")],
)
def test_garbage_refused(chain: str, key: str) -> None:
    with pytest.raises(ValidationError):
        tls.load(chain, key)


@pytest.mark.parametrize(
    ("names", "domain", "covered"),
    [
        (["www.example.com"], "www.example.com", True),
        (["www.example.com"], "example.com", False),
        (["*.example.com"], "www.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "a.b.example.com", False),
        (["*.example.com"], "*.example.com", True),
        (["www.example.com"], "*.example.com", False),
        (["*.example.com"], "wwwexample.com", False),
    ],
)
def test_covers(names: list[str], domain: str, covered: bool) -> None:
    assert tls.covers(names, domain) is covered


def test_self_signed_covers_the_platform_domain() -> None:
    cert = tls.self_signed("deis.local")
    assert tls.names_of(cert.chain) == ("deis.local", "*.deis.local")
    info = tls.load(cert.chain, cert.key)
    assert tls.covers(info.names, "myapp.deis.local")


# -- rendering -------------------------------------------------------------------------------------
APP_FULL = """\
# App myapp. Rendered by routerconf from templates/app.conf.j2, replaced on every deploy.
upstream app_myapp {
    server 127.0.0.1:5000 max_fails=0;
    keepalive 64;
}

server {
    listen 80;
    listen 8443 ssl;
    server_name myapp.localhost other.org;
    access_log logs/myapp.access.log deis_metrics buffer=64k flush=1s;
    set $deis_app myapp;
    if ($scheme = http) {
        return 301 https://$host:8443$request_uri;
    }
    set $deis_hsts "";
    if ($scheme = https) {
        set $deis_hsts "max-age=300";
    }
    add_header Strict-Transport-Security $deis_hsts always;
    allow 127.0.0.1/32;
    allow ::1/128;
    deny all;
    client_max_body_size 1m;
    proxy_connect_timeout 5s;
    proxy_read_timeout 30s;
    proxy_send_timeout 40s;

    location / {
        proxy_pass http://app_myapp;
        proxy_next_upstream error timeout http_502 http_503;
        # No container answered (all stopped or crashed since the last deploy): a clear 503, not
        # nginx's bare 502. An app's own 502 passes through unchanged.
        error_page 502 =503 @unavailable;
    }

    location @unavailable {
        default_type text/plain;
        return 503 "myapp has no healthy web process right now; please try again later\\n";
    }
}

server {
    listen 80;
    listen 8443 ssl;
    server_name *.example.com www.example.org;
    ssl_certificate CRT;
    ssl_certificate_key KEY;
    access_log logs/myapp.access.log deis_metrics buffer=64k flush=1s;
    set $deis_app myapp;
    if ($scheme = http) {
        return 301 https://$host:8443$request_uri;
    }
    set $deis_hsts "";
    if ($scheme = https) {
        set $deis_hsts "max-age=300";
    }
    add_header Strict-Transport-Security $deis_hsts always;
    allow 127.0.0.1/32;
    allow ::1/128;
    deny all;
    client_max_body_size 1m;
    proxy_connect_timeout 5s;
    proxy_read_timeout 30s;
    proxy_send_timeout 40s;

    location / {
        proxy_pass http://app_myapp;
        proxy_next_upstream error timeout http_502 http_503;
        # No container answered (all stopped or crashed since the last deploy): a clear 503, not
        # nginx's bare 502. An app's own 502 passes through unchanged.
        error_page 502 =503 @unavailable;
    }

    location @unavailable {
        default_type text/plain;
        return 503 "myapp has no healthy web process right now; please try again later\\n";
    }
}
"""


def test_render_app_with_domains_cert_and_every_setting(test_ca) -> None:
    chain, key = test_ca.issue(["*.example.com", "www.example.org"])
    cert = Cert(chain, key)
    options = {
        "https_enforce": "true",
        "hsts": "300",
        "whitelist": "127.0.0.1/32,::1/128",
        "body_size": "1m",
        "connect_timeout": "5s",
        "read_timeout": "30s",
        "send_timeout": "40s",
    }
    site = Site(domains=("*.example.com", "other.org", "www.example.org"), cert=cert, options=options)
    text = render_app("myapp", "localhost", ["127.0.0.1:5000"], 80, https_port=8443, site=site)
    crt, key_file = cert_files("myapp", cert)
    assert crt.startswith("certs/myapp.") and crt.endswith(".crt") and key_file == crt[:-4] + ".key"
    assert text == APP_FULL.replace("CRT", crt).replace("KEY", key_file)


def test_render_app_https_on_443_redirects_without_a_port() -> None:
    site = Site(options={"https_enforce": "true"})
    text = render_app("myapp", "localhost", [], 80, https_port=443, site=site)
    assert "        return 301 https://$host$request_uri;\n" in text
    assert "    listen 443 ssl;\n" in text
    assert 'return 503 "myapp has no running web process\\n";' in text


def test_render_app_maintenance() -> None:
    text = render_app("myapp", "localhost", ["127.0.0.1:5000"], 80, site=Site(options={"maintenance": "1"}))
    assert 'return 503 "myapp is down for maintenance; please try again later\\n";' in text
    assert "proxy_pass" not in text
    assert "ssl" not in text  # no https_port: no TLS at all


@pytest.mark.parametrize("bad", ["www.example.com; include x", "a.localhost", "bad domain.com", "x\ny.com"])
def test_render_app_refuses_a_bad_domain_even_if_it_got_this_far(bad: str) -> None:
    with pytest.raises(RouterError):
        render_app("myapp", "localhost", [], 80, site=Site(domains=(bad,)))


@pytest.mark.parametrize(
    "options", [{"body_size": "1m;"}, {"evil": "1"}, {"whitelist": "1.2.3.4; allow all"}]
)
def test_render_app_refuses_bad_settings_even_if_they_got_this_far(options: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        render_app("myapp", "localhost", [], 80, site=Site(options=options))


def test_stored_timeouts_over_the_cap_render_at_the_cap() -> None:
    """An older platform allowed read_timeout up to a day: such a stored value still renders, capped."""
    from routerconf.site import clamp_stored

    assert clamp_stored({"read_timeout": "1d"}) == {"read_timeout": "1d"}  # not a duration: left to check
    assert clamp_stored({"read_timeout": "86400s", "send_timeout": "2h", "body_size": "1m"}) == {
        "read_timeout": "3600s",
        "send_timeout": "3600s",
        "body_size": "1m",
    }
    text = render_app(
        "capped", "example.test", ["127.0.0.1:5000"], 80, site=Site(options={"read_timeout": "24h"})
    )
    assert "proxy_read_timeout 3600s;" in text and "set $deis_app capped;" in text


@pytest.mark.parametrize("ip", ["10.0.0.1", "127.0.0.1", "127.1", "0x7f.1", "*.0.0.1", "192.168.1.10."])
def test_ip_literals_are_not_domains(ip: str) -> None:
    with pytest.raises(ValidationError, match="an IP address is not a domain"):
        check_domain(ip, "deis.local")
    assert check_domain("1.2.3.example.com", "deis.local") == "1.2.3.example.com"
