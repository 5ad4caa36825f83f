"""The platform's own small PKI: a CA, etcd's and the registry's server certificates and the one client
certificate every etcd client (appliance, `deis` CLI, tests) presents. etcd asks for a client
certificate signed by this CA (mutual TLS), so a process that can reach 127.0.0.1:ETCD but cannot read
STATE/tls (a build, a one-off container, another host user) cannot read or write any key; the registry
asks for the password of core.regauth.

Made once (`ensure`); files that exist are never regenerated, so a running etcd and its clients keep
agreeing. The directory is 0700 and the keys 0600, owned by whoever runs `deis up` (root).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650  # a private CA on loopback: no rotation machinery, a decade of validity


@dataclass(frozen=True)
class EtcdTLS:
    """The files a client of etcd needs: the CA that signed the server, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


def ca_path(tls_dir: Path) -> Path:
    return tls_dir / "ca.crt"


def server_paths(tls_dir: Path, server: str = "etcd") -> tuple[Path, Path]:
    """A server's certificate and key: etcd's, or the registry's (`server="registry"`)."""
    return tls_dir / f"{server}.crt", tls_dir / f"{server}.key"


def client_tls(tls_dir: Path) -> EtcdTLS:
    return EtcdTLS(ca_path(tls_dir), tls_dir / "client.crt", tls_dir / "client.key")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deis"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Written under a temporary name with its mode set before any byte, then renamed into place."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a host clock a little behind
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _make_ca(tls_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name("deis platform CA"), _name("deis platform CA"), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    _write(tls_dir / "ca.key", _key_pem(key), 0o600)
    _write(ca_path(tls_dir), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def _load_ca(tls_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{tls_dir / 'ca.key'} is not an EC key")
    return key, x509.load_pem_x509_certificate(ca_path(tls_dir).read_bytes())


def _issue(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str, server: bool, crt: Path, key_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = _builder(_name(cn), ca[1].subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False
    )
    if server:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    _write(key_path, _key_pem(key), 0o600)
    _write(crt, builder.sign(ca[0], hashes.SHA256()).public_bytes(serialization.Encoding.PEM), 0o644)


def ensure(tls_dir: Path) -> EtcdTLS:
    """The CA and every certificate under `tls_dir`, made if missing (existing ones are kept)."""
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls_dir.chmod(0o700)
    ca = (
        _load_ca(tls_dir)
        if ca_path(tls_dir).exists() and (tls_dir / "ca.key").exists()
        else _make_ca(tls_dir)
    )
    for server in ("etcd", "registry"):  # a platform from before the registry's TLS gets its own here
        crt, key = server_paths(tls_dir, server)
        if not (crt.exists() and key.exists()):
            _issue(ca, server, True, crt, key)
    client = client_tls(tls_dir)
    if not (client.cert.exists() and client.key.exists()):
        _issue(ca, "deis platform", False, client.cert, client.key)
    return client
