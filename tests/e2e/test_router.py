"""Custom domains, certificates and router settings end to end: ssh commands against the real appliance,
requests through the real nginx (127.0.0.1 only, the Host header and SNI pick the app)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from scheduler import quickack
from scheduler.docker import network_name
from tests.harness import Harness, Key, unique
from tests.pki import TestCA

pytestmark = pytest.mark.e2e


def get(h: Harness, host: str, path: str = "/") -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", h.settings.http_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def https_get(h: Harness, host: str, cafile: Path) -> tuple[int, str, tuple[str, ...]]:
    """GET over TLS with SNI = host, the chain and the name checked against `cafile`."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", h.settings.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            names = tuple(v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS")
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body, names


def ok(r) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def one_line_error(r, text: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith(" !     "), r.stderr
    assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.make(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def site(platform: Harness, admin: Key):
    """One deployed app with one custom domain."""
    app = unique("web")
    work = platform.checkout("hello", app)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    domain = f"www.{unique('d')}.example.com"
    out = ok(platform.ssh(admin, "domains:add", domain, "--app", app))
    assert f"-----> done, {domain} routes to {app}" in out
    return app, domain, work


def conf(h: Harness, app: str) -> str:
    return (h.settings.nginx_dir / "apps" / f"{app}.conf").read_text()


# -- domains ---------------------------------------------------------------------------------------
def test_a_wildcard_domain_routes_and_is_listed_and_freed(platform: Harness, admin: Key, site) -> None:
    app, _, _ = site
    zone = f"{unique('w')}.example.com"
    ok(platform.ssh(admin, "domains:add", f"*.{zone}", "--app", app))
    listed = json.loads(ok(platform.ssh(admin, "domains", "--json", "--app", app)))
    assert f"*.{zone}" in [d["domain"] for d in listed]
    status, _, body = get(platform, f"shop.{zone}")
    assert (status, body) == (200, "hello from v1\n")
    ok(platform.ssh(admin, "domains:remove", f"*.{zone}", "--app", app))
    assert get(platform, f"shop.{zone}")[0] == 404


def test_a_domain_routes_to_its_app(platform: Harness, admin: Key, site) -> None:
    app, domain, _ = site
    status, _, body = get(platform, domain)
    assert (status, body) == (200, "hello from v1\n")
    assert get(platform, f"{app}.localhost")[2] == "hello from v1\n"  # APP.<platform domain> still works
    assert get(platform, f"other.{domain}")[0] == 404
    listed = json.loads(ok(platform.ssh(admin, "domains", "--app", app, "--json")))
    assert [d["domain"] for d in listed] == [domain]
    assert listed[0]["by"] == "admin"
    assert domain in ok(platform.ssh(admin, "domains:list", "--app", app))


def test_a_domain_belongs_to_one_app_and_an_app_without_containers_gets_503(
    platform: Harness, admin: Key, site
) -> None:
    app, domain, _ = site
    other = unique("idle")
    ok(platform.ssh(admin, "apps:create", other))
    one_line_error(platform.ssh(admin, "domains:add", domain, "--app", other), "already used by another app")
    one_line_error(platform.ssh(admin, "domains:add", domain, "--app", app), f"already a domain of {app}")
    mine = f"{unique('idle')}.example.org"
    ok(platform.ssh(admin, "domains:add", mine, "--app", other))
    status, _, body = get(platform, mine)
    assert (status, body) == (503, f"{other} has no running web process\n")
    ok(platform.ssh(admin, "domains:remove", mine, "--app", other))
    assert get(platform, mine)[0] == 404
    ok(platform.ssh(admin, "domains:add", mine, "--app", other))  # free again after a remove


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("localhost", "invalid domain"),
        ("x.localhost", "platform's own domain"),
        ("'*.localhost'", "invalid domain"),
        ("'a.example.com;include /etc/passwd'", "invalid domain"),
        ("'a.example.com server_name evil.com'", "invalid domain"),
        ('"a.example.com\nreturn 200"', "invalid domain"),
        ("'$host.example.com'", "invalid domain"),
        ("'a.example.com}'", "invalid domain"),
        ("../../x", "invalid domain"),
    ],
)
def test_bad_domains_get_one_line_and_change_nothing(
    platform: Harness, admin: Key, site, bad: str, message: str
) -> None:
    app, _, _ = site
    before = (ok(platform.ssh(admin, "domains", "--app", app, "--json")), conf(platform, app))
    r = platform.ssh(admin, "domains:add", bad, "--app", app)
    assert r.returncode in (1, 2)
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert (ok(platform.ssh(admin, "domains", "--app", app, "--json")), conf(platform, app)) == before


def test_only_owners_collaborators_and_admins(platform: Harness, admin: Key, alice: Key, site) -> None:
    app, domain, _ = site
    hidden = "does not exist or is not yours"
    one_line_error(platform.ssh(alice, "domains:add", "alice.example.com", "--app", app), hidden)
    one_line_error(platform.ssh(alice, "domains:remove", domain, "--app", app), hidden)
    one_line_error(platform.ssh(alice, "router:set", "maintenance=true", "--app", app), hidden)
    one_line_error(platform.ssh(alice, "certs", "--app", app), hidden)
    r = platform.ssh(admin, "domains:add", "x.example.com", "--app", "'x;y'")
    one_line_error(r, "invalid app name")


# -- certificates ----------------------------------------------------------------------------------
def test_certificates(platform: Harness, admin: Key, site, ca: TestCA) -> None:
    app, domain, _ = site
    chain, key = ca.issue([domain, f"*.{domain.split('.', 1)[1]}"])
    out = ok(platform.ssh(admin, "certs:add", "--app", app, input=chain + key))
    assert "-----> Adding a certificate for" in out and "expires" in out
    status, body, names = https_get(platform, domain, ca.file)
    assert (status, body) == (200, "hello from v1\n")
    assert names[0] == domain
    listed = json.loads(ok(platform.ssh(admin, "certs", "--app", app, "--json")))
    assert listed[0]["names"][0] == domain and "key" not in listed[0] and "chain" not in listed[0]
    # files on disk: 0600, outside anything nginx serves
    files = list((platform.settings.nginx_dir / "certs").glob(f"{app}.*"))
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)

    wrong_name, wrong_key = ca.issue(["other.example.net"])
    one_line_error(
        platform.ssh(admin, "certs:add", "--app", app, input=wrong_name + wrong_key),
        f"does not cover {domain}",
    )
    expired, expired_key = ca.issue([domain], days=-1, start_days=-5)
    one_line_error(platform.ssh(admin, "certs:add", "--app", app, input=expired + expired_key), "expired")
    _, other_key = ca.issue([domain])
    one_line_error(platform.ssh(admin, "certs:add", "--app", app, input=chain + other_key), "does not match")
    one_line_error(platform.ssh(admin, "certs:add", "--app", app, input="garbage\n"), "no PEM certificate")
    # the good one still serves
    assert https_get(platform, domain, ca.file)[0] == 200

    ok(platform.ssh(admin, "certs:remove", "--app", app))
    with pytest.raises(ssl.SSLCertVerificationError):  # the platform's self-signed one now
        https_get(platform, domain, ca.file)
    assert json.loads(ok(platform.ssh(admin, "certs", "--app", app, "--json"))) == []
    one_line_error(platform.ssh(admin, "certs:remove", "--app", app), "has no certificate")


# -- router settings -------------------------------------------------------------------------------
def test_router_settings(platform: Harness, admin: Key, site) -> None:
    app, domain, _ = site
    ok(platform.ssh(admin, "router:set", "https_enforce=true", "hsts=true", "--app", app))
    status, headers, _ = get(platform, domain, "/x?y=1")
    assert status == 301
    assert headers["location"] == f"https://{domain}:{platform.settings.https_port}/x?y=1"
    ok(platform.ssh(admin, "router:unset", "https_enforce", "hsts", "--app", app))
    assert get(platform, domain)[0] == 200

    ok(platform.ssh(admin, "router:set", "whitelist=10.0.0.0/8,192.168.0.0/16", "--app", app))
    assert get(platform, domain)[0] == 403
    assert get(platform, f"{app}.localhost")[0] == 403
    ok(platform.ssh(admin, "router:set", "'whitelist=10.0.0.0/8, 127.0.0.1'", "--app", app))
    assert get(platform, domain)[0] == 200

    ok(platform.ssh(admin, "router:set", "maintenance=on", "body_size=5m", "read_timeout=2m", "--app", app))
    status, _, body = get(platform, domain)
    assert (status, body) == (503, f"{app} is down for maintenance; please try again later\n")
    shown = json.loads(ok(platform.ssh(admin, "router", "--app", app, "--json")))
    assert shown == {
        "body_size": "5m",
        "maintenance": "true",
        "read_timeout": "2m",
        "whitelist": "10.0.0.0/8,127.0.0.1/32",
    }
    assert "maintenance" in ok(platform.ssh(admin, "router", "--app", app))
    ok(
        platform.ssh(
            admin, "router:unset", "maintenance", "whitelist", "body_size", "read_timeout", "--app", app
        )
    )
    assert get(platform, domain)[2] == "hello from v1\n"
    assert json.loads(ok(platform.ssh(admin, "router", "--app", app, "--json"))) == {}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("'body_size=10m; include /etc/passwd'", "body_size must be a size"),
        ("'read_timeout=1s;return 200 pwned'", "read_timeout must be a duration"),
        ("'whitelist=127.0.0.1 all'", "'all' is not an IP address"),
        ("whitelist=", "needs at least one address"),
        ("maintenance=sometimes", "maintenance must be true or false"),
        ("connect_timeout=5m", "at most 75s"),
        ("'evil=1}'", "unknown router setting"),
        ("nokey", "expected KEY=VALUE"),
    ],
)
def test_bad_router_settings_get_one_line_and_change_nothing(
    platform: Harness, admin: Key, site, assignment: str, message: str
) -> None:
    app, _, _ = site
    before = (ok(platform.ssh(admin, "router", "--app", app, "--json")), conf(platform, app))
    r = platform.ssh(admin, "router:set", assignment, "--app", app)
    assert r.returncode in (1, 2)
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert (ok(platform.ssh(admin, "router", "--app", app, "--json")), conf(platform, app)) == before


def test_config_values_never_reach_nginx(platform: Harness, admin: Key, site) -> None:
    """Config vars go to the app's environment, not to the router: nginx-looking values are inert."""
    app, domain, _ = site
    value = "x; } server { listen 1; return 200 pwned; } #"
    ok(platform.ssh(admin, "config:set", f"'EVIL={value}'", "--app", app))
    assert "pwned" not in conf(platform, app)
    assert get(platform, domain)[0] == 200
    ok(platform.ssh(admin, "config:unset", "EVIL", "--app", app))


# -- deploys and isolation -------------------------------------------------------------------------
def test_a_deploy_keeps_domains_and_settings(platform: Harness, admin: Key, site) -> None:
    app, domain, work = site
    ok(platform.ssh(admin, "router:set", "body_size=7m", "--app", app))
    platform.commit_change(work, "message.txt", "hello from v2\n")
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert get(platform, domain)[2] == "hello from v2\n"
    assert "client_max_body_size 7m;" in conf(platform, app)
    ok(platform.ssh(admin, "router:unset", "body_size", "--app", app))


def test_a_bad_certificate_for_one_app_while_another_deploys(
    platform: Harness, admin: Key, site, ca: TestCA
) -> None:
    app, domain, _ = site
    other = unique("other")
    work = platform.checkout("hello", other)
    pushed: dict[str, object] = {}
    pusher = threading.Thread(target=lambda: pushed.update(r=platform.push(work, admin)))
    pusher.start()
    chain, _ = ca.issue([domain])
    _, wrong_key = ca.issue([domain])
    refused = [
        platform.ssh(admin, "certs:add", "--app", app, input=chain + wrong_key),
        platform.ssh(admin, "certs:add", "--app", app, input="-----BEGIN CERTIFICATE-----\nAAAA\n"),
        platform.ssh(admin, "certs:add", "--app", app, input=chain),
    ]
    pusher.join(300)
    for r in refused:
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = pushed["r"]
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    assert platform.get(other) == (200, "hello from v1\n")
    assert get(platform, domain)[0] == 200


NAGLE_APP = """import http.server, os


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # head and body go out in two writes, Nagle on (no TCP_NODELAY)

    def do_GET(self):
        body = b"nagle\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_an_app_writing_head_and_body_apart_is_not_held_by_delayed_acks(
    platform: Harness, admin: Key
) -> None:
    """The router's pooled upstream connection used to turn every request of such an app into a 40 ms
    delayed-ACK stall (44 ms p50); the app network's route now ACKs at once (scheduler.quickack)."""
    app = unique("nagle")
    work = platform.checkout("hello", app)
    platform.commit_change(work, "app.py", NAGLE_APP)
    assert platform.push(work, admin).returncode == 0
    try:
        times = []
        for _ in range(30):  # fresh client connections, as browsers behind other proxies make them
            started = time.perf_counter()
            status, _, body = get(platform, f"{app}.{platform.settings.domain}")
            times.append(time.perf_counter() - started)
            assert (status, body) == (200, "nagle\n")
        times.sort()
        assert times[len(times) // 2] < 0.02, times  # a stall is >= 40 ms each time, not noise
        bridge = (
            "br-" + docker.from_env().networks.get(network_name(str(platform.settings.state_dir))).id[:12]
        )
        routes = json.loads(
            subprocess.run(quickack.show_argv(bridge), capture_output=True, check=True).stdout
        )
        assert routes and not quickack.lacking(routes)
    finally:
        assert platform.ssh(admin, "apps:destroy", app, "--confirm", app).returncode == 0
