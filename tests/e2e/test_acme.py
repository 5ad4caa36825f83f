"""certs:auto end to end against Let's Encrypt's test CA (pebble) on loopback: issuance over HTTP-01
answered by the real router, SNI, renewal, a failed validation, authorization.

pebble issues certificates valid VALIDITY seconds and the platform renews RENEW_BEFORE seconds before
expiry, so every certificate here is renewed about 20 s after it was issued, with no forcing; pebble's
mock DNS resolves every name to 127.0.0.1 (the router), unless a test makes one SERVFAIL.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import Harness, Key, unique
from tests.load import Load
from tests.pebble import Pebble

pytestmark = pytest.mark.e2e

VALIDITY = 120
RENEW_BEFORE = 100


@pytest.fixture(scope="module")
def acme_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, Pebble]]:
    """A platform of its own (its appliance needs the ACME settings from its start) and pebble."""
    root = tmp_path_factory.mktemp("acme")
    h = Harness(root / "platform")
    pebble = Pebble(root / "pebble", http_port=h.settings.http_port, validity=VALIDITY)
    s = h.settings
    s.acme_email = "ops@example.com"
    s.acme_renew_before = RENEW_BEFORE
    s.acme_check_interval = 1.0
    s.acme_retry_min = 1.0
    s.acme_retry_max = 4.0
    try:
        pebble.start()
        s.acme_directory, s.acme_ca_bundle = pebble.directory, pebble.ca.file
        h.up()
        yield h, pebble
    finally:
        try:
            h.down()
        finally:
            pebble.stop()


@pytest.fixture(scope="module")
def h(acme_platform: tuple[Harness, Pebble]) -> Harness:
    return acme_platform[0]


@pytest.fixture(scope="module")
def pebble(acme_platform: tuple[Harness, Pebble]) -> Pebble:
    return acme_platform[1]


@pytest.fixture(scope="module")
def owner(h: Harness) -> Key:
    return h.add_user("owner")


@pytest.fixture(scope="module")
def root(pebble: Pebble) -> Path:
    return pebble.issuing_root()


@pytest.fixture(scope="module")
def site(h: Harness, owner: Key) -> tuple[str, str]:
    app = unique("tls")
    r = h.push(h.checkout("hello", app), owner)
    assert r.returncode == 0, r.stderr
    domain = f"www.{unique('d')}.example.com"
    ok(h.ssh(owner, "domains:add", domain, "--app", app))
    return app, domain


def ok(r) -> str:
    assert r.returncode == 0, (r.stdout, r.stderr)
    return str(r.stdout)


def one_line_error(r, text: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith(" !     "), r.stderr
    assert text in lines[0], lines[0]


def served(h: Harness, host: str, cafile: Path) -> tuple[str, tuple[str, ...], int, str]:
    """(SHA-256 fingerprint, DNS names, status, body) of a GET over TLS with SNI = host, the chain
    checked against `cafile`."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", h.settings.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            der = s.getpeercert(binary_form=True)
            names = tuple(v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS")
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    fingerprint = hashlib.sha256(der or b"").digest().hex(":").upper()
    return fingerprint, names, int(head.split()[1]), body


def stored(h: Harness, key: Key, app: str) -> dict:
    certs = json.loads(ok(h.ssh(key, "certs", "--app", app, "--json")))
    return certs[0] if certs else {}


def wait_until(what: str, check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def events(h: Harness, key: Key, app: str, text: str) -> int:
    # The platform's own lines only: under load the app's request log would push them out of -n.
    out = ok(h.ssh(key, "logs", "-n", "1000", "--source", "deis", "--grep", shlex.quote(text), "--app", app))
    return sum(text in line for line in out.splitlines())


def test_certs_auto_issues_a_certificate_served_by_sni(
    h: Harness, owner: Key, site: tuple[str, str], root: Path
) -> None:
    app, domain = site
    wildcard = f"*.{unique('w')}.example.com"
    ok(h.ssh(owner, "domains:add", wildcard, "--app", app))
    started = time.monotonic()
    out = ok(h.ssh(owner, "certs:auto", "--app", app))
    took = time.monotonic() - started
    print(f"certs:auto (order, HTTP-01 through the router, finalize, switch) took {took:.2f}s")
    assert f"-----> Requesting a certificate for {domain}" in out
    assert f"a wildcard needs DNS-01, which certs:auto does not do): {wildcard}" in out
    assert "issuer CN=Pebble Intermediate CA" in out and "-----> done, https" in out
    fingerprint, names, status, body = served(h, domain, root)  # chains to pebble's root
    assert (status, body, names) == (200, "hello from v1\n", (domain,))
    cert = stored(h, owner, app)
    assert cert["auto"] is True and cert["fingerprint"] == fingerprint and cert["names"] == [domain]
    assert cert["issuer"].startswith("CN=Pebble Intermediate CA") and "key" not in cert
    listing = ok(h.ssh(owner, "certs", "--app", app))
    assert "Pebble Intermediate CA" in listing and " auto" in listing and "certs:auto is on" in listing
    # Nothing pending is left in the router, and the ACME account is root's alone.
    conf = (h.settings.nginx_dir / "apps" / f"{app}.conf").read_text()
    assert "acme-challenge" not in conf
    account = h.settings.acme_account
    assert account.stat().st_mode & 0o777 == 0o600 and account.parent.stat().st_mode & 0o777 == 0o700
    assert events(h, owner, app, "certs:auto issued a certificate for") == 1
    # A path under /.well-known/acme-challenge/ that is not pending is the app's like any other.
    status, text = h.get(app, "/.well-known/acme-challenge/not-pending")
    assert (status, text) == (200, "hello from v1\n")
    # Manual certificates would fight the automatic ones: refused while certs:auto is on.
    one_line_error(h.ssh(owner, "certs:remove", "--app", app), "turn that off first (certs:auto:off)")
    one_line_error(h.ssh(owner, "certs:add", "--app", app, input="x"), "turn that off first")


def test_a_domain_added_later_is_covered(h: Harness, owner: Key, site: tuple[str, str], root: Path) -> None:
    app, domain = site
    second = f"api.{unique('d')}.example.com"
    out = ok(h.ssh(owner, "domains:add", second, "--app", app))
    assert f"certs:auto: a certificate covering {second} is being requested" in out

    def covered() -> bool:
        # etcd has the certificate a moment before the router serves it, and during nginx's reload an
        # old worker (reuseport) may still take a connection with the old config: five in a row.
        try:
            return all(second in served(h, second, root)[1] for _ in range(5))
        except ssl.SSLCertVerificationError:  # the platform's own, until then
            return False

    wait_until(f"a certificate covering {second} served", covered, 30)
    _, names, status, _ = served(h, second, root)
    assert (sorted(names), status) == (sorted([domain, second]), 200)
    assert sorted(stored(h, owner, app)["names"]) == sorted([domain, second])


def test_a_domain_that_does_not_validate_holds_back_only_itself(
    h: Harness, owner: Key, site: tuple[str, str], root: Path, pebble: Pebble
) -> None:
    app, domain = site
    pending = f"not-pointed-yet.{unique('d')}.example.com"
    pebble.servfail(pending)
    try:
        seen = events(h, owner, app, f"certs:auto could not validate {pending}")
        ok(h.ssh(owner, "domains:add", pending, "--app", app))
        wait_until("its failure", lambda: events(h, owner, app, f"could not validate {pending}") > seen, 30)
        listing = ok(h.ssh(owner, "certs", "--app", app))
        assert f"not covered yet: {pending}" in listing
        assert pending not in stored(h, owner, app)["names"]
        assert served(h, domain, root)[2] == 200  # the others keep their certificate
        ok(h.ssh(owner, "domains:remove", pending, "--app", app))
    finally:
        pebble.clear_servfail(pending)


def test_renewal_switches_the_certificate_in_with_no_failed_request(
    h: Harness, owner: Key, site: tuple[str, str], root: Path
) -> None:
    app, domain = site
    before = stored(h, owner, app)["fingerprint"]
    renewed = events(h, owner, app, "certs:auto renewed a certificate")
    tls_failures: list[str] = []
    tls_sent = 0
    stop = threading.Event()

    def tls_load() -> None:  # a fresh TLS handshake each time: sees whichever certificate serves
        nonlocal tls_sent
        while not stop.is_set():
            tls_sent += 1
            try:
                if served(h, domain, root)[2] != 200:
                    tls_failures.append("status")
            except (OSError, ssl.SSLError) as exc:
                tls_failures.append(repr(exc))

    worker = threading.Thread(target=tls_load, daemon=True)
    with Load(h.settings.http_port, domain, workers=3, limit=90) as load:
        worker.start()
        try:
            wait_until("a renewal", lambda: stored(h, owner, app)["fingerprint"] != before, 60)
            after = stored(h, owner, app)["fingerprint"]
            wait_until("the new certificate served", lambda: served(h, domain, root)[0] != before, 10)
            time.sleep(0.5)  # traffic on the new certificate too, not only up to the switch
        finally:
            stop.set()
            worker.join(timeout=30)
    result = load.stop()
    print(
        f"during a renewal: http {result.summary()}; https handshakes {tls_sent}, failed {len(tls_failures)}"
    )
    assert result.failed == 0 and result.sent > 50, result.summary()
    assert tls_failures == [] and tls_sent > 5, tls_failures[:3]
    assert served(h, domain, root)[0] in (after, stored(h, owner, app)["fingerprint"])
    wait_until(  # recorded just after the switch
        "a renewal event", lambda: events(h, owner, app, "certs:auto renewed a certificate") > renewed, 10
    )


def test_a_failed_renewal_keeps_the_working_certificate(
    h: Harness, owner: Key, site: tuple[str, str], root: Path, pebble: Pebble
) -> None:
    app, domain = site
    failed = "certs:auto renewal failed"
    seen = events(h, owner, app, failed)
    pebble.servfail(domain)
    try:
        wait_until("a failed renewal", lambda: events(h, owner, app, failed) > seen, 60)
        kept = stored(h, owner, app)["fingerprint"]
        wait_until("a second failure (backoff)", lambda: events(h, owner, app, failed) > seen + 1, 30)
        assert stored(h, owner, app)["fingerprint"] == kept
        fingerprint, _, status, body = served(h, domain, root)
        assert (fingerprint, status, body) == (kept, 200, "hello from v1\n")
        listing = ok(h.ssh(owner, "certs", "--app", app))
        assert "last attempt failed" in listing and domain in listing
        assert "acme-challenge" not in (h.settings.nginx_dir / "apps" / f"{app}.conf").read_text()
    finally:
        pebble.clear_servfail(domain)
    wait_until("a renewal once DNS answers", lambda: stored(h, owner, app)["fingerprint"] != kept, 30)
    # The new certificate is stored before the router serves it; the error is cleared just after.
    wait_until(
        "the error cleared",
        lambda: "last attempt failed" not in ok(h.ssh(owner, "certs", "--app", app)),
        10,
    )


def test_only_owners_collaborators_and_admins(h: Harness, owner: Key, site: tuple[str, str]) -> None:
    app, _ = site
    mallory = h.add_user("mallory")
    hidden = f"app {app} does not exist or is not yours"
    for cmd in ("certs:auto", "certs:auto:off"):
        one_line_error(h.ssh(mallory, cmd, "--app", app), hidden)
    assert stored(h, owner, app)["auto"] is True
    ok(h.ssh(owner, "perms:create", "mallory", "--app", app))
    out = ok(h.ssh(mallory, "certs:auto:off", "--app", app))
    assert "certs:auto is off" in out and "keeps serving" in out
    one_line_error(h.ssh(mallory, "certs:auto:off", "--app", app), "certs:auto is not on")
    assert "certs:auto is on" not in ok(h.ssh(owner, "certs", "--app", app))
