"""The registry's credentials: made once, root's only, and what the registry and buildah read agrees."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import bcrypt

from core import pki, regauth


def made(tmp_path: Path, registry: str = "127.0.0.1:5000") -> tuple[Path, regauth.RegistryAuth]:
    tls = tmp_path / "tls"
    pki.ensure(tls)
    return tls, regauth.ensure(tls, registry, pki.ca_path(tls))


def test_made_once_and_readable_by_the_owner_only(tmp_path: Path) -> None:
    tls, auth = made(tmp_path)
    assert auth.user == "deis" and len(auth.password) >= 40
    for path in (regauth.password_path(tls), regauth.htpasswd_path(tls), regauth.authfile_path(tls)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(regauth.ca_dir(tls).stat().st_mode) == 0o700
    again = regauth.ensure(tls, "127.0.0.1:5000", pki.ca_path(tls))
    assert again == auth == regauth.load(tls)


def test_the_registry_the_engine_and_buildah_get_the_same_secret(tmp_path: Path) -> None:
    tls, auth = made(tmp_path, "127.0.0.1:15000")
    user, _, hashed = regauth.htpasswd_path(tls).read_text().strip().partition(":")
    assert user == "deis" and bcrypt.checkpw(auth.password.encode(), hashed.encode())
    assert hashed.startswith("$2b$04$")  # checked on every request of a push: the cheapest cost
    token = json.loads(regauth.authfile_path(tls).read_text())["auths"]["127.0.0.1:15000"]["auth"]
    assert base64.b64decode(token).decode() == f"deis:{auth.password}"
    assert auth.header() == f"Basic {token}"
    assert auth.auth_config() == {"username": "deis", "password": auth.password}
    # buildah's --cert-dir reads every *.key there as a client key: only the CA goes in it.
    assert [p.name for p in regauth.ca_dir(tls).iterdir()] == ["ca.crt"]
    assert (regauth.ca_dir(tls) / "ca.crt").read_bytes() == pki.ca_path(tls).read_bytes()


def test_a_changed_port_or_a_stale_htpasswd_is_rewritten_and_the_password_kept(tmp_path: Path) -> None:
    tls, auth = made(tmp_path)
    regauth.htpasswd_path(tls).write_text("deis:$2b$04$notthehashofitatall\n")
    again = regauth.ensure(tls, "127.0.0.1:6000", pki.ca_path(tls))
    assert again == auth
    _, _, hashed = regauth.htpasswd_path(tls).read_text().strip().partition(":")
    assert bcrypt.checkpw(auth.password.encode(), hashed.encode())
    assert list(json.loads(regauth.authfile_path(tls).read_text())["auths"]) == ["127.0.0.1:6000"]


def test_the_registry_has_its_own_server_certificate(tmp_path: Path) -> None:
    tls, _ = made(tmp_path)
    crt, key = pki.server_paths(tls, "registry")
    assert crt.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert crt.read_bytes() != pki.server_paths(tls)[0].read_bytes()
