"""The registry's credentials: one platform user with a random password, made once under STATE/tls
(0700, the files 0600, root's), so a process that reaches the registry's port but cannot read them
(a one-off, another host user) cannot list, pull or push any app's image.

    password      the secret (made once, kept: the registry and its clients keep agreeing)
    htpasswd      its bcrypt line, the registry's `auth.htpasswd` file
    auth.json     docker's auth file format, for buildah's `--authfile`
    registry-ca/  only the CA (buildah's `--cert-dir` takes every *.key there for a client key)

The engine gets the same credentials per call (`auth_config`): dockerd keeps no login of ours.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import bcrypt

USER = "deis"


@dataclass(frozen=True)
class RegistryAuth:
    user: str
    password: str

    def auth_config(self) -> dict[str, str]:
        """What the docker SDK takes for a push or pull (`auth_config=`)."""
        return {"username": self.user, "password": self.password}

    def header(self) -> str:
        """The HTTP Basic `Authorization` value for the registry's API."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


def password_path(tls_dir: Path) -> Path:
    return tls_dir / "registry.password"


def htpasswd_path(tls_dir: Path) -> Path:
    return tls_dir / "registry.htpasswd"


def authfile_path(tls_dir: Path) -> Path:
    return tls_dir / "registry-auth.json"


def ca_dir(tls_dir: Path) -> Path:
    return tls_dir / "registry-ca"


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load(tls_dir: Path) -> RegistryAuth:
    """The credentials; OSError when they are not made yet or this process may not read them."""
    return RegistryAuth(USER, password_path(tls_dir).read_text().strip())


def _matches(password: str, hashed: str) -> bool:
    try:
        return bool(hashed) and bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # not a bcrypt hash at all
        return False


def ensure(tls_dir: Path, registry: str, ca: Path) -> RegistryAuth:
    """The password (made if missing, else kept), and the files derived from it for `registry`
    (host:port, which `up` may change): the htpasswd line is remade only if it no longer matches."""
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not password_path(tls_dir).exists():
        _write(password_path(tls_dir), secrets.token_urlsafe(32) + "\n")
    auth = load(tls_dir)
    line = htpasswd_path(tls_dir).read_text().strip() if htpasswd_path(tls_dir).exists() else ""
    user, _, hashed = line.partition(":")
    if user != auth.user or not _matches(auth.password, hashed):
        # The registry checks the hash on every request of a push: the cheapest cost (about 1 ms),
        # as a random 256-bit password needs no stretching against guesses.
        hashed = bcrypt.hashpw(auth.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        _write(htpasswd_path(tls_dir), f"{auth.user}:{hashed}\n")
    token = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode()
    _write(authfile_path(tls_dir), json.dumps({"auths": {registry: {"auth": token}}}) + "\n")
    ca_dir(tls_dir).mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(ca, ca_dir(tls_dir) / "ca.crt")
    return auth
