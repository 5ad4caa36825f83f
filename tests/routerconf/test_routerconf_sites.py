"""Custom domains, TLS (SNI), router settings and isolation against a real nginx on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import ssl
import stat
from collections.abc import Callable

import pytest

from core import proc
from core.errors import DeisError, RouterError
from core.settings import Settings
from routerconf import Router, tls
from routerconf.site import Cert, Site

WWW = "www.example.com"


def https_get(
    settings: Settings, host: str, cafile: str, path: str = "/", *, check_hostname: bool = True
) -> tuple[int, dict[str, str], str, ssl.SSLSocket]:
    """GET over TLS to the router, with SNI = host and the chain checked against `cafile`.

    OpenSSL never matches a wildcard on a single label (`*.localhost`), so for the default platform
    domain the tests check the chain but not the name."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = check_hostname
    conn = http.client.HTTPSConnection("127.0.0.1", settings.https_port, timeout=10, context=ctx)
    # Connect to 127.0.0.1 but send (and verify) `host` as the server name.
    conn._create_connection = lambda *a, **k: socket.create_connection(  # type: ignore[attr-defined]
        ("127.0.0.1", settings.https_port), 10
    )
    conn.host = host
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        sock = conn.sock
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode(), sock
    finally:
        conn.close()


def peer_names(settings: Settings, host: str, cafile: str, check_hostname: bool = True) -> tuple[str, ...]:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = check_hostname
    with socket.create_connection(("127.0.0.1", settings.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            cert = s.getpeercert()
    return tuple(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")


# -- domains ---------------------------------------------------------------------------------------
def test_custom_domains_route_by_host(
    router: Router, settings: Settings, backend_factory, http_get: Callable
) -> None:
    one, two = backend_factory("one\n"), backend_factory("two\n")
    router.publish("one", [one.endpoint], Site(domains=(WWW, "*.one.org")))
    router.publish("two", [two.endpoint], Site(domains=("two.example.com",)))
    port = settings.http_port
    assert http_get(port, WWW).body == "one\n"
    assert http_get(port, "anything.one.org").body == "one\n"
    assert http_get(port, "one.localhost").body == "one\n"
    assert http_get(port, "two.example.com").body == "two\n"
    assert http_get(port, "two.localhost").body == "two\n"
    assert http_get(port, "one.org").status == 404  # a wildcard does not cover its base
    assert http_get(port, "example.com").status == 404
    router.publish("one", [one.endpoint], Site(domains=("*.one.org",)))
    assert http_get(port, WWW).status == 404


# -- TLS -------------------------------------------------------------------------------------------
def test_platform_certificate_made_at_start(router: Router, settings: Settings, backend) -> None:
    crt = settings.nginx_dir / "certs" / "_platform.crt"
    key = settings.nginx_dir / "certs" / "_platform.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(crt.stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.nginx_dir / "certs").stat().st_mode) == 0o700
    assert tls.names_of(crt.read_text()) == ("localhost", "*.localhost")
    router.publish("myapp", [backend.endpoint])
    status, _, body, _ = https_get(settings, "myapp.localhost", str(crt), check_hostname=False)
    assert (status, body) == (200, "hello from backend\n")
    assert backend.seen[-1]["x-forwarded-proto"] == "https"
    assert backend.seen[-1]["x-forwarded-port"] == str(settings.https_port)
    # An unknown name gets the platform certificate and the 404 page.
    assert https_get(settings, "nobody.localhost", str(crt), check_hostname=False)[0] == 404
    before = crt.read_text()
    router.start()
    assert crt.read_text() == before  # kept while it covers the domain


def test_platform_certificate_follows_the_domain(settings: Settings, tracker, backend) -> None:
    r = tracker.make(settings)
    r.start()
    tracker.note(r)
    settings.domain = "apps.example.net"
    r.start()
    crt = settings.nginx_dir / "certs" / "_platform.crt"
    assert tls.names_of(crt.read_text()) == ("apps.example.net", "*.apps.example.net")
    # start() reloaded nginx with the new certificate: the default server serves it
    assert peer_names(settings, "x.apps.example.net", str(crt)) == ("apps.example.net", "*.apps.example.net")
    r.publish("myapp", [backend.endpoint])
    status, _, body, _ = https_get(settings, "myapp.apps.example.net", str(crt))  # name checked too
    assert (status, body) == (200, "hello from backend\n")


def test_app_certificate_is_served_by_sni(
    router: Router, settings: Settings, backend, test_ca, http_get: Callable
) -> None:
    chain, key = test_ca.issue([WWW, "*.example.org"])
    info = tls.load(chain, key)
    router.publish("myapp", [backend.endpoint], Site(domains=(WWW, "api.example.org"), cert=info.cert))
    ca = str(test_ca.file)
    status, _, body, _ = https_get(settings, WWW, ca)
    assert (status, body) == (200, "hello from backend\n")
    assert https_get(settings, "api.example.org", ca)[2] == "hello from backend\n"
    assert peer_names(settings, WWW, ca) == (WWW, "*.example.org")
    # APP.localhost keeps the platform certificate, which the test CA did not sign.
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_names(settings, "myapp.localhost", ca)
    platform = str(settings.nginx_dir / "certs" / "_platform.crt")
    assert peer_names(settings, "myapp.localhost", platform, check_hostname=False) == (
        "localhost",
        "*.localhost",
    )
    files = sorted(p.name for p in (settings.nginx_dir / "certs").glob("myapp.*"))
    assert len(files) == 2
    for name in files:
        assert stat.S_IMODE((settings.nginx_dir / "certs" / name).stat().st_mode) == 0o600

    # A new certificate replaces the files; removing it removes them.
    chain2, key2 = test_ca.issue([WWW, "api.example.org"])
    router.publish("myapp", [backend.endpoint], Site(domains=(WWW,), cert=tls.load(chain2, key2).cert))
    assert peer_names(settings, WWW, ca) == (WWW, "api.example.org")
    files2 = sorted(p.name for p in (settings.nginx_dir / "certs").glob("myapp.*"))
    assert len(files2) == 2 and not set(files2) & set(files)
    router.publish("myapp", [backend.endpoint], Site(domains=(WWW,)))
    assert list((settings.nginx_dir / "certs").glob("myapp.*")) == []
    assert http_get(settings.http_port, WWW).status == 200


def test_an_app_named_like_a_certificate_file_touches_only_its_own(
    router: Router, settings: Settings, backend, test_ca
) -> None:
    certs = settings.nginx_dir / "certs"
    chain, key = test_ca.issue([WWW])
    router.publish("other", [backend.endpoint], Site(domains=(WWW,), cert=tls.load(chain, key).cert))
    before = sorted(p.name for p in certs.iterdir())
    for app in ("platform", "_platform", "other-x", "o"):
        try:
            router.publish(app, [backend.endpoint])
            router.remove(app)
        except DeisError:
            pass  # "_platform" is no app name
    assert sorted(p.name for p in certs.iterdir()) == before
    assert "_platform.crt" in before and "_platform.key" in before


def test_https_enforce_and_hsts(router: Router, settings: Settings, backend, http_get: Callable) -> None:
    router.publish("myapp", [backend.endpoint], Site(options={"https_enforce": "true", "hsts": "600"}))
    resp = http_get(settings.http_port, "myapp.localhost", "/a/b?c=1")
    assert resp.status == 301
    assert resp.headers["location"] == f"https://myapp.localhost:{settings.https_port}/a/b?c=1"
    assert "strict-transport-security" not in resp.headers  # only over https
    platform = str(settings.nginx_dir / "certs" / "_platform.crt")
    status, headers, body, _ = https_get(settings, "myapp.localhost", platform, check_hostname=False)
    assert (status, body) == (200, "hello from backend\n")
    assert headers["strict-transport-security"] == "max-age=600"
    router.publish("myapp", [backend.endpoint])
    assert http_get(settings.http_port, "myapp.localhost").status == 200
    assert (
        "strict-transport-security"
        not in https_get(settings, "myapp.localhost", platform, check_hostname=False)[1]
    )


# -- settings --------------------------------------------------------------------------------------
def test_allow_list(router: Router, settings: Settings, backend, http_get: Callable) -> None:
    router.publish("myapp", [backend.endpoint], Site(options={"whitelist": "10.0.0.0/8,127.0.0.1/32"}))
    assert http_get(settings.http_port, "myapp.localhost").status == 200
    router.publish("myapp", [backend.endpoint], Site(options={"whitelist": "10.0.0.0/8,192.168.0.0/16"}))
    resp = http_get(settings.http_port, "myapp.localhost")
    assert resp.status == 403
    assert "hello" not in resp.body


def test_maintenance_page(router: Router, settings: Settings, backend, http_get: Callable) -> None:
    router.publish("myapp", [backend.endpoint], Site(options={"maintenance": "true"}))
    resp = http_get(settings.http_port, "myapp.localhost")
    assert resp.status == 503
    assert resp.body == "myapp is down for maintenance; please try again later\n"
    assert not backend.seen
    router.publish("myapp", [backend.endpoint], Site(options={"maintenance": "false"}))
    assert http_get(settings.http_port, "myapp.localhost").status == 200


def test_no_healthy_container_gives_a_clear_503(
    router: Router, settings: Settings, backend_factory, port_factory, http_get: Callable
) -> None:
    """Endpoints that all stopped answering since the last publish: 503 and a page, not a bare 502."""
    dead = [f"127.0.0.1:{port_factory()}", f"127.0.0.1:{port_factory()}"]
    router.publish("myapp", dead)
    resp = http_get(settings.http_port, "myapp.localhost")
    assert resp.status == 503
    assert resp.body == "myapp has no healthy web process right now; please try again later\n"
    assert resp.headers["content-type"].startswith("text/plain")


def test_an_apps_own_502_passes_through(
    router: Router, settings: Settings, backend, http_get: Callable
) -> None:
    router.publish("myapp", [backend.endpoint])
    resp = http_get(settings.http_port, "myapp.localhost", "/status/502")
    assert (resp.status, resp.body) == (502, "hello from backend\n")


def test_body_size(router: Router, settings: Settings, backend) -> None:
    router.publish("myapp", [backend.endpoint], Site(options={"body_size": "1k"}))

    def post(size: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=10)
        try:
            conn.request("POST", "/", body=b"x" * size, headers={"Host": "myapp.localhost"})
            return conn.getresponse().status
        finally:
            conn.close()

    assert post(1000) == 200
    assert post(5000) == 413


def test_websocket_upgrade_passes_through(router: Router, settings: Settings, backend) -> None:
    router.publish("myapp", [backend.endpoint])
    with socket.create_connection(("127.0.0.1", settings.http_port), timeout=10) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: myapp.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
        status_line = head.split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 101 Switching Protocols", head
        assert b"upgrade: websocket" in head.lower()
        s.sendall(b"ping through nginx")
        echoed = b""
        while len(echoed) < len(b"ping through nginx"):
            chunk = s.recv(4096)
            assert chunk
            echoed += chunk
        assert echoed == b"ping through nginx"
    seen = backend.seen[-1]
    assert seen["upgrade"] == "websocket" and seen["connection"].lower() == "upgrade"


# -- isolation -------------------------------------------------------------------------------------
def test_a_certificate_nginx_refuses_keeps_the_last_good_block_and_others_go_on(
    router: Router, settings: Settings, backend_factory, test_ca, http_get: Callable
) -> None:
    a, b = backend_factory("a\n"), backend_factory("b\n")
    router.publish("appa", [a.endpoint], Site(domains=(WWW,)))
    live = settings.nginx_dir / "apps" / "appa.conf"
    good = live.read_text()
    pid = router._pid()
    assert pid is not None
    workers = proc.children(pid)
    chain, _ = test_ca.issue([WWW])
    _, other_key = test_ca.issue([WWW])
    with pytest.raises(RouterError) as info:  # a key that does not match (never past certs:add)
        router.publish("appa", [a.endpoint], Site(domains=(WWW,), cert=Cert(chain, other_key)))
    message = str(info.value)
    assert message.startswith("nginx refused the configuration for appa: [emerg]")
    assert "key values mismatch" in message or "SSL_CTX_use_PrivateKey" in message
    assert "\n" not in message
    assert live.read_text() == good
    assert list((settings.nginx_dir / "certs").glob("appa.*")) == []
    assert proc.children(pid) == workers  # no reload happened
    assert http_get(settings.http_port, WWW).body == "a\n"
    # B deploys, and A's later good publish works too.
    router.publish("appb", [b.endpoint], Site(domains=("b.example.com",)))
    assert http_get(settings.http_port, "b.example.com").body == "b\n"
    assert http_get(settings.http_port, WWW).body == "a\n"
    router.publish("appa", [b.endpoint], Site(domains=(WWW,)))
    assert http_get(settings.http_port, WWW).body == "b\n"


def test_a_clash_found_only_by_the_reload_is_taken_back(
    router: Router, settings: Settings, backend, http_get: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate is checked alone; a block that clashes with another app's passes that check, is
    refused by nginx's reload, and is taken back: the app keeps its block, others keep working."""
    router.publish("one", [backend.endpoint])
    router.publish("two", [backend.endpoint])
    live = settings.nginx_dir / "apps" / "two.conf"
    good = live.read_text()
    import routerconf.router

    clash = "upstream app_one {\n    server 127.0.0.1:9;\n}\n"
    with monkeypatch.context() as mp:
        mp.setattr(routerconf.router, "render_app", lambda *a, **k: clash)
        with pytest.raises(
            RouterError, match=r"^nginx refused the configuration for two: .*duplicate upstream"
        ):
            router.publish("two", [backend.endpoint])
    assert live.read_text() == good
    assert http_get(settings.http_port, "one.localhost").status == 200
    assert http_get(settings.http_port, "two.localhost").status == 200
    router.publish("three", [backend.endpoint])  # the next reload works
    assert http_get(settings.http_port, "three.localhost").status == 200


@pytest.mark.parametrize(
    "site",
    [
        Site(domains=("www.example.com; include /etc/passwd",)),
        Site(domains=("a.example.com\nserver_name evil",)),
        Site(domains=("a.localhost",)),
        Site(options={"read_timeout": "10s; return 200 pwned"}),
        Site(options={"whitelist": "127.0.0.1 all"}),
        Site(options={"evil_key": "1"}),
    ],
)
def test_injection_through_the_site_is_refused_before_anything_is_written(
    router: Router, settings: Settings, site: Site
) -> None:
    with pytest.raises(DeisError):
        router.publish("myapp", ["127.0.0.1:5000"], site)
    assert list((settings.nginx_dir / "apps").iterdir()) == []
