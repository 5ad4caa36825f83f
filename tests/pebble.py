"""Let's Encrypt's test ACME server, pebble, and its mock DNS, on loopback for the certs:auto tests.

pebble's own HTTPS listener gets a certificate of a throwaway CA made here (Debian ships none); its
HTTP-01 validations go to `http_port` (the router's), for names pebble-challtestsrv resolves to
127.0.0.1 (every name, unless a test makes one fail with `servfail`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import free_port
from tests.pki import TestCA

START_TIMEOUT = 20.0


def _serve_cert(ca: TestCA, directory: Path) -> tuple[Path, Path]:
    """A certificate for pebble's listener: IP 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    crt, key_file = directory / "pebble.crt", directory / "pebble.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return crt, key_file


@dataclass
class Pebble:
    root: Path
    http_port: int
    validity: int = 7 * 86400  # seconds: how long the certificates it issues are valid
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    dns_management_port: int = field(default_factory=free_port)
    ca: TestCA = field(init=False)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca = TestCA.make(self.root)
        crt, key = _serve_cert(self.ca, self.root)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(crt),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": free_port(),  # TLS-ALPN-01 is not used; nothing listens there
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": self.validity,
            }
        }
        conf = self.root / "pebble.json"
        conf.write_text(json.dumps(config))
        dns = f"127.0.0.1:{self.dns_port}"
        log = (self.root / "challtestsrv.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", dns, "-management", f"127.0.0.1:{self.dns_management_port}",
                 "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
        # No random validation delay; no nonces refused on purpose (the 5 % default makes retries);
        # no reuse of an earlier valid authorization (its 50 % default would let a renewal pass
        # without a validation, so a test's failing DNS would fail only sometimes).
        env.update(PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        log = (self.root / "pebble.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                ["pebble", "-config", str(conf), "-dnsserver", dns],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        )  # fmt: skip
        self._wait_up()
        return self

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.file))

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.directory, timeout=2, context=self._context()) as r:
                    json.load(r)
                with socket.create_connection(("127.0.0.1", self.dns_management_port), timeout=1):
                    return
            except OSError as exc:
                if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                    logs = "".join(p.read_text() for p in self.root.glob("*.log"))
                    raise RuntimeError(f"pebble did not come up: {exc}\n{logs}") from exc
                time.sleep(0.05)

    def issuing_root(self) -> Path:
        """pebble's root CA (from its management API), which every certificate it issues chains to."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, timeout=5, context=self._context()) as r:
            pem = r.read()
        path = self.root / "issuing-root.pem"
        path.write_bytes(pem)
        return path

    def _dns(self, what: str, host: str) -> None:
        body = json.dumps({"host": host}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_management_port}/{what}", data=body)
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def servfail(self, host: str) -> None:
        """Make the mock DNS answer SERVFAIL for `host`: its validation then fails."""
        self._dns("set-servfail", host)

    def clear_servfail(self, host: str) -> None:
        self._dns("clear-servfail", host)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
