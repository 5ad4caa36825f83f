"""Upgrade in place to etcd's mutual TLS: a platform the last main before TLS started (its own code,
from git: plain-http etcd container, data in STATE/etcd, its appliance) is moved by this checkout's
`deis up` to TLS, with its users, apps and config kept, etcd's container replaced and the appliance
handed over to this code."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from appliance import components, services
from releaser import apps
from releaser.store import Store
from tests.e2e.traces import registry_get
from tests.harness import Harness, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# main's last commit before etcd's TLS (issue 17): the layout this upgrade starts from.
BEFORE_TLS = "c2515e8ab82ae3c8aaebbee55c1fb2bfa971af40"
SECRET = "kept-secret-91d3"


def old_checkout(dest: Path) -> Path:
    archive = dest / "old.tar"
    with archive.open("wb") as fh:
        r = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_TLS], stdout=fh, check=False)
    if r.returncode != 0:
        pytest.skip(f"commit {BEFORE_TLS[:7]} is not in this clone")
    src = dest / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    return src


def admin_cli(h: Harness, src: Path, *args: str, input: str | None = None) -> str:
    """`deis ARGS` run from the checkout `src` (its own code: no bytecode written into it)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "gitserver.admin", "--state-dir", str(h.settings.state_dir), *args]
    r = subprocess.run(
        argv, cwd=src, env=env, input=input, capture_output=True, text=True, timeout=900, check=False
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout + r.stderr


@pytest.fixture
def old_platform(tmp_path: Path) -> Iterator[tuple[Harness, Path]]:
    src = old_checkout(tmp_path)
    h = Harness(tmp_path / "platform")
    h.settings.save()
    existing = {t for i in docker.from_env().images.list() for t in i.tags}
    try:
        admin_cli(h, src, "up")
        yield h, src
    finally:
        old_image = getattr(h, "old_image", None)
        h.down()
        # The earlier code's appliance image, if this test made it (others may run that code).
        if old_image and old_image not in existing:
            with contextlib.suppress(docker.errors.APIError):
                docker.from_env().images.remove(old_image)


def test_up_moves_plain_http_etcd_and_registry_to_authenticated_tls_with_nothing_lost(
    old_platform: tuple[Harness, Path],
) -> None:
    h, src = old_platform
    s = h.settings
    assert services.etcd_answers_plain(s) and not s.tls_dir.exists()  # the earlier layout
    assert services.registry_answers_plain(s)
    key = h.key("admin")
    admin_cli(h, src, "keys:add", "admin", "--admin", input=key.public)
    app = unique("upg")
    for command in (("apps:create", app), ("config:set", "--app", app, f"SECRET={SECRET}")):
        r = h.ssh(key, *command)
        assert r.returncode == 0, r.stderr
    client = docker.from_env()
    etcd_name = components.container_name(s, "etcd")
    old_spec = client.containers.get(etcd_name).labels[services.SPEC_LABEL]
    old_image = h.appliance_container().image.tags[0]
    h.old_image = old_image  # type: ignore[attr-defined]  # removed by the fixture

    out = admin_cli(h, ROOT, "up")

    assert client.containers.get(etcd_name).labels[services.SPEC_LABEL] != old_spec, out
    assert not services.etcd_answers_plain(s) and services.etcd_ready(s)
    # The registry too: https with the password only, the images it held kept.
    assert not services.registry_answers_plain(s) and services.registry_ready(s)
    status, body = registry_get(h, "_catalog")
    assert status == 200 and "deis/stack" in body["repositories"], body
    assert h.appliance_container().image.tags[0] != old_image  # handed over to this code
    store = Store.of(s)
    assert [u.name for u in apps.list_users(store)] == ["admin"]
    r = h.ssh(key, "config", "--app", app)
    assert r.returncode == 0 and SECRET in r.stdout, (r.stdout, r.stderr)
    # And it writes: a new key lands in the TLS etcd, read back by the platform's certificate.
    r = h.ssh(key, "config:set", "--app", app, "AFTER=1")
    assert r.returncode == 0, r.stderr
    assert "AFTER" in h.ssh(key, "config", "--app", app).stdout
    # `up` again changes nothing: the certificates are kept, etcd is not replaced.
    before = {p: p.read_bytes() for p in s.tls_dir.rglob("*") if p.is_file()}
    spec = client.containers.get(etcd_name).labels[services.SPEC_LABEL]
    admin_cli(h, ROOT, "up")
    assert {p: p.read_bytes() for p in s.tls_dir.rglob("*") if p.is_file()} == before
    assert client.containers.get(etcd_name).labels[services.SPEC_LABEL] == spec
