"""The platform's PKI: made once, private, and what etcd's mutual TLS needs."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from core import pki


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_makes_a_private_ca_and_both_certificates(tmp_path: Path) -> None:
    d = tmp_path / "tls"
    client = pki.ensure(d)
    assert _mode(d) == 0o700
    for key in (d / "ca.key", d / "etcd.key", client.key):
        assert _mode(key) == 0o600
    ca = x509.load_pem_x509_certificate(client.ca.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_paths(d)[0].read_bytes())
    mine = x509.load_pem_x509_certificate(client.cert.read_bytes())
    for cert in (server, mine):
        cert.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    usage = mine.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ensure_never_regenerates_what_exists(tmp_path: Path) -> None:
    d = tmp_path / "tls"
    pki.ensure(d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    (d / "client.crt").unlink()
    (d / "client.key").unlink()
    pki.ensure(d)
    after = {p.name: p.read_bytes() for p in d.iterdir()}
    assert sorted(after) == sorted(before)
    for name in ("ca.crt", "ca.key", "etcd.crt", "etcd.key"):
        assert after[name] == before[name]
    ca = x509.load_pem_x509_certificate(after["ca.crt"])
    x509.load_pem_x509_certificate(after["client.crt"]).verify_directly_issued_by(ca)
