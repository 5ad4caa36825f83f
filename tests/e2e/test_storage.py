"""storage:* end to end: a volume's file survives a redeploy, mounting under load fails no request,
old and new containers share it, bad input changes nothing, a stranger cannot touch it."""

from __future__ import annotations

import json

import docker
import pytest

from tests.e2e.test_releases import ok, refused
from tests.harness import Harness, Key, unique
from tests.load import Load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bob(platform: Harness) -> Key:
    return platform.add_user("bob-vol")


def test_a_volume_survives_redeploys_and_mounting_fails_no_request(
    platform: Harness, alice: Key, bob: Key
) -> None:
    app = unique("vol")
    work = platform.checkout("hello", app)
    assert platform.push(work, alice).returncode == 0
    platform.wait_steady(app)
    with Load(platform.settings.http_port, f"{app}.{platform.settings.domain}", workers=3) as traffic:
        out = ok(platform.ssh(alice, "storage:mount", "-a", app, "data:/app/data"))
    assert traffic.result.sent > 0 and traffic.result.failed == 0, traffic.result.summary()
    assert f"done, {app}:v" in out
    listed = json.loads(ok(platform.ssh(alice, "storage:list", "-a", app, "--json")))
    assert listed == [{"name": "data", "path": "/app/data", "types": []}]
    ok(platform.ssh(alice, "run", "-a", app, "--", "sh", "-c", "'echo kept > /app/data/f'"))
    # the web container sees what the one-off wrote
    (web,) = [c for c in platform.containers(app) if ".cmd." in c or ".web." in c]
    c = docker.from_env().containers.get(web)
    assert c.exec_run(["cat", "/app/data/f"]).output == b"kept\n"
    platform.commit_change(work, "message.txt", "redeployed")
    with Load(platform.settings.http_port, f"{app}.{platform.settings.domain}", workers=3) as traffic:
        assert platform.push(work, alice).returncode == 0
    assert traffic.result.failed == 0, traffic.result.summary()
    platform.wait_for(app, "redeployed")
    assert ok(platform.ssh(alice, "run", "-a", app, "--", "cat", "/app/data/f")) == "kept\n"

    # bad input and strangers: one line each, nothing changes
    refused(platform.ssh(alice, "storage:mount", "-a", app, "data"), "expected NAME:/path")
    refused(platform.ssh(alice, "storage:mount", "-a", app, "Bad:/x"), "invalid volume name 'Bad'")
    refused(platform.ssh(alice, "storage:mount", "-a", app, "x:/app/../etc"), "invalid mount path")
    refused(platform.ssh(alice, "storage:mount", "-a", app, "x:/proc/sys"), "may not be mounted at /proc/sys")
    refused(platform.ssh(alice, "storage:mount", "-a", app, "other:/app/data"), "mounts data at /app/data")
    refused(platform.ssh(bob, "storage:mount", "-a", app, "x:/y"), "does not exist or is not yours")
    refused(platform.ssh(bob, "storage:list", "-a", app), "does not exist or is not yours")
    assert len(json.loads(ok(platform.ssh(alice, "storage:list", "-a", app, "--json")))) == 1

    # unmount keeps the data: mounted again, the file is there
    ok(platform.ssh(alice, "storage:unmount", "-a", app, "data"))
    r = platform.ssh(alice, "run", "-a", app, "--", "cat", "/app/data/f")
    assert r.returncode != 0
    ok(platform.ssh(alice, "storage:mount", "-a", app, "data:/app/data", "--type", "web"))
    assert ok(platform.ssh(alice, "run", "-a", app, "--", "cat", "/app/data/f")) == "kept\n"
    refused(platform.ssh(alice, "storage:unmount", "-a", app, "nope"), f"{app} has no volume nope")
    ok(platform.ssh(alice, "apps:destroy", app, "--confirm", app))
    assert not (platform.settings.state_dir / "volumes" / app).exists()
