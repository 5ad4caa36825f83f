"""Certificates: checking what users hand in (`certs:add`) and the platform's self-signed default.

    load(chain_pem, key_pem)    parse and check a chain + key; returns CertInfo and the normalized PEMs
    covers(names, domain)       whether a certificate's names cover a host name (RFC 6125 wildcards)
    self_signed(domain)         a certificate for DOMAIN and *.DOMAIN with a fresh key (EC P-256)

Uses the `cryptography` package; its errors become ValidationError here, once. What is written to
disk is re-serialized from the parsed objects, never the user's text, so no stray bytes reach nginx.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from core.errors import ValidationError
from routerconf.site import Cert

MAX_PEM = 256 * 1024


@dataclass(frozen=True)
class CertInfo:
    names: tuple[str, ...]  # DNS names from the SAN (the CN if there is no SAN), lowercase
    subject: str
    issuer: str
    not_before: float
    not_after: float
    fingerprint: str  # SHA-256 of the leaf, hex with colons
    cert: Cert  # normalized PEM: the chain leaf first, and the key as unencrypted PKCS#8


def split_bundle(text: str) -> tuple[str, str]:
    """One stdin text holding certificates and a private key -> (certificates PEM, key PEM)."""
    if len(text) > MAX_PEM:
        raise ValidationError(f"the certificate input is larger than {MAX_PEM // 1024} KiB")
    certs: list[str] = []
    keys: list[str] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("-----BEGIN ") and line.endswith("-----"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith("-----END "):
                block = "\n".join(current) + "\n"
                (keys if "PRIVATE KEY" in current[0] else certs).append(block)
                current = None
    if not certs:
        raise ValidationError("no PEM certificate (-----BEGIN CERTIFICATE-----) found on stdin")
    if len(keys) != 1:
        raise ValidationError(f"expected exactly one PEM private key on stdin, found {len(keys)}")
    return "".join(certs), keys[0]


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))


def load(chain_pem: str, key_pem: str, now: dt.datetime | None = None) -> CertInfo:
    """Parse and check a certificate chain (leaf first) and its key. ValidationError, one line, if the
    key does not match the leaf, the leaf is expired or not yet valid, or anything fails to parse."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as exc:
        raise ValidationError(f"the certificate is not valid PEM: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError as exc:
        raise ValidationError("the private key is encrypted: give it without a passphrase") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError(f"the private key is not valid PEM: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValidationError("the private key must be RSA or ECDSA")
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise ValidationError("the private key does not match the certificate (the first one on stdin)")
    if leaf.not_valid_after_utc <= now:
        raise ValidationError(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if leaf.not_valid_before_utc > now:
        raise ValidationError(f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    names = _names(leaf)
    if not names:
        raise ValidationError("the certificate names no host (no DNS subject alternative name or CN)")
    pem = serialization.Encoding.PEM
    normalized = Cert(
        chain="".join(c.public_bytes(pem).decode() for c in chain),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )
    return CertInfo(
        names=names,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        cert=normalized,
    )


def covers(names: tuple[str, ...] | list[str], domain: str) -> bool:
    """A certificate name covers `domain` if equal, or if it is `*.BASE` and domain is one more label
    on BASE (a wildcard never covers BASE itself nor two labels). A wildcard domain needs that exact
    wildcard name."""
    d = domain.lower()
    for name in names:
        if name == d:
            return True
        if name.startswith("*.") and not d.startswith("*."):
            label, _, rest = d.partition(".")
            if label and rest == name[2:]:
                return True
    return False


def self_signed(domain: str, days: int = 3650) -> Cert:
    """A self-signed certificate for DOMAIN and *.DOMAIN (the platform's default for https)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Cert(
        chain=cert.public_bytes(pem).decode(),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


def names_of(chain_pem: str) -> tuple[str, ...]:
    """The DNS names of the first certificate in `chain_pem` (for the platform certificate check)."""
    return _names(x509.load_pem_x509_certificates(chain_pem.encode())[0])
