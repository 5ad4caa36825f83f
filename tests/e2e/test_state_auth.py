"""The platform's state answers only the platform's own credentials (issue 17): etcd its client
certificate, the registry (every app's image) its password.

The attacker (mallory, an ordinary user with an app of her own) tries to read the victim's config
secret from etcd: from a Dockerfile build (`ADD http(s)://127.0.0.1:ETCD/...`), from a one-off `run`
container, from a container in the host's network namespace (where the engine's legacy builder
fetches ADD URLs), and as another, unprivileged host user. Plain http is refused, https without a
client certificate is refused, and the client key is not readable by anyone but root. The positive
control: the platform's own certificate reads the secret. The same probes against the registry's
catalog get a refusal or a 401, never the list of apps.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from appliance import services
from core import regauth
from core.regauth import RegistryAuth
from core.settings import Settings
from tests.e2e.test_dockerfile import app_tree
from tests.e2e.traces import registry_get
from tests.harness import Harness, Key, unique

SECRET = "victim-secret-5e0b77"

# Each address and scheme: "LEAK" and the body if the endpoint answered, else what refused it.
PROBE = """
import socket, ssl, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
addrs = sys.argv[3:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
handlers = (urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
opener = urllib.request.build_opener(*handlers)
for addr in addrs:
    for scheme in ("http", "https"):
        url = f"{scheme}://{addr}:{port}/{path}"
        try:
            print("LEAK", url, opener.open(url, timeout=5).read()[:20000].decode(errors="replace"))
        except Exception as exc:
            print("refused", url, type(exc).__name__, exc)
"""


ENDPOINTS = ("etcd", "registry")


def endpoint(s: Settings, which: str) -> list[str]:
    """The probe's port and path for one of the platform's state endpoints."""
    if which == "etcd":
        return [str(s.etcd_port), "v2/keys/deis?recursive=true"]
    return [str(s.registry_port), "v2/_catalog"]


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


def gateway_addresses() -> list[str]:
    """The host's address on each engine network: what a container reaches the host by."""
    client = docker.from_env()
    found = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Gateway"):
                found.append(cfg["Gateway"])
    return found


@pytest.fixture(scope="module")
def mallory(platform: Harness) -> Key:
    return platform.add_user("mallory-state")  # one name per module: the platform is the session's


@pytest.fixture(scope="module")
def victim(platform: Harness, admin: Key) -> Iterator[str]:
    app = unique("vict")
    ok(platform.push(platform.checkout("hello", app), admin))
    ok(platform.ssh(admin, "config:set", "--app", app, f"SECRET={SECRET}"))
    yield app
    ok(platform.ssh(admin, "apps:destroy", app, "--confirm", app))


@pytest.fixture(scope="module")
def attacker(platform: Harness, mallory: Key) -> Iterator[str]:
    app = unique("atk")
    ok(platform.push(platform.checkout("hello", app), mallory))
    yield app
    ok(platform.ssh(mallory, "apps:destroy", app, "--confirm", app))


def _refused(output: str) -> None:
    assert SECRET not in output and "LEAK" not in output and '"node"' not in output, output
    assert output.count("refused") >= 2, output


def test_the_platform_certificate_reads_the_secret(platform: Harness, victim: str) -> None:
    """The positive control: the probes below would see the secret if etcd answered them."""
    s = platform.settings
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=services.etcd_client_context(s))
    )
    with opener.open(f"{s.etcd_url}/v2/keys/deis?recursive=true", timeout=5) as resp:
        assert SECRET in resp.read().decode()


def test_without_the_client_certificate_etcd_answers_nothing(platform: Harness, victim: str) -> None:
    s = platform.settings
    plain = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises((urllib.error.URLError, OSError)):
        plain.open(f"http://127.0.0.1:{s.etcd_port}/v2/keys/deis?recursive=true", timeout=5)
    anonymous = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(s.etcd_tls.ca))),
    )
    with pytest.raises((urllib.error.URLError, OSError)) as err:
        anonymous.open(f"{s.etcd_url}/v2/keys/deis?recursive=true", timeout=5)
    print(f"\nhttps without a client certificate: {err.value}")


def test_the_keys_are_private(platform: Harness) -> None:
    tls = platform.settings.tls_dir
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    secrets = ("registry.key", "registry.password", "registry.htpasswd", "registry-auth.json")
    for name in ("ca.key", "etcd.key", "client.key", *secrets):
        st = (tls / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, name


def test_the_registry_answers_its_password_only(platform: Harness, victim: str) -> None:
    s = platform.settings
    status, body = registry_get(platform, "_catalog")  # the positive control
    assert status == 200 and victim in body["repositories"]
    url = f"{s.registry_url}/v2/_catalog"
    trusting = ssl.create_default_context(cafile=str(s.etcd_tls.ca))
    for auth in (None, RegistryAuth("deis", "guess"), RegistryAuth("admin", s.registry_auth().password)):
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=trusting)
        )
        headers = {"Authorization": auth.header()} if auth else {}
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(urllib.request.Request(url, headers=headers), timeout=5)
        assert err.value.code == 401, auth
    with pytest.raises((urllib.error.URLError, OSError)):  # plain http: not even a 401
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{s.registry}/v2/_catalog", timeout=5
        )


@pytest.mark.parametrize("which", ENDPOINTS)
def test_another_host_user_cannot_read_the_state(platform: Harness, victim: str, which: str) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    s = platform.settings
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"]
    secret = s.etcd_tls.key if which == "etcd" else regauth.password_path(s.tls_dir)
    read_key = f"open({json.dumps(str(secret))}).read()"
    key = subprocess.run([*as_nobody, "-c", read_key], check=False, capture_output=True, text=True)
    assert key.returncode != 0 and "PermissionError" in key.stderr, key.stderr
    probe = [*as_nobody, "-c", PROBE, *endpoint(s, which), "127.0.0.1"]
    r = subprocess.run(probe, check=False, capture_output=True, text=True, timeout=60)
    _refused(r.stdout + r.stderr)


@pytest.mark.parametrize("which", ENDPOINTS)
def test_a_one_off_cannot_read_the_state(
    platform: Harness, mallory: Key, victim: str, attacker: str, which: str
) -> None:
    addrs = " ".join(["127.0.0.1", *gateway_addresses()])
    port, path = endpoint(platform.settings, which)
    r = platform.ssh(
        mallory,
        "run",
        "--app",
        attacker,
        "--",
        "python3",
        "-c",
        f"'{PROBE}'",
        port,
        f"'{path}'",
        addrs,
    )
    _refused(r.stdout + r.stderr)


@pytest.mark.parametrize("which", ENDPOINTS)
def test_a_host_network_container_cannot_read_the_state(platform: Harness, victim: str, which: str) -> None:
    """Where the engine's legacy builder runs ADD and RUN: the host's own loopback."""
    client = docker.from_env()
    name = unique("probe")
    try:
        out = client.containers.run(
            platform.settings.stack_image,
            ["python3", "-c", PROBE, *endpoint(platform.settings, which), "127.0.0.1"],
            name=name,
            network_mode="host",
            labels={"io.deis.platform": str(platform.settings.state_dir)},
            stderr=True,
        )
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    _refused(out.decode())


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_build_cannot_add_the_state(
    platform: Harness, mallory: Key, victim: str, attacker: str, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{platform.settings.etcd_port}/v2/keys/deis?recursive=true"
    work = app_tree(platform, attacker, f"FROM deis/stack:bookworm\nADD {url} /x\nRUN cat /x\n")
    r = platform.push(work, mallory)
    assert r.returncode != 0
    assert SECRET not in r.stdout + r.stderr and '"node"' not in r.stderr
