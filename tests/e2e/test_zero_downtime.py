"""Zero downtime under load, self-healing, and deploy safety (real docker, nginx, etcd; stock git/ssh)."""

from __future__ import annotations

import json
import time

import docker
import pytest

from core.names import ContainerName
from releaser.store import Store
from scheduler.base import ProcessSpec
from scheduler.docker import DockerBackend
from tests.harness import Harness, Key, unique
from tests.load import Load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key):
    name = unique("zdt")
    work = platform.checkout("hello", name)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name, work


def load(platform: Harness, name: str) -> Load:
    return Load(platform.settings.http_port, f"{name}.{platform.settings.domain}", workers=3)


def test_push_under_load_drops_nothing(platform: Harness, admin: Key, app) -> None:
    name, work = app
    platform.commit_change(work, "message.txt", "pushed under load\n")
    with load(platform, name) as traffic:
        time.sleep(0.5)
        r = platform.push(work, admin)
        time.sleep(1.0)
    assert r.returncode == 0, r.stderr
    res = traffic.result
    assert res.failed == 0, res.summary()
    assert res.sent > 50, res.summary()
    assert "pushed under load" in res.bodies  # the switch happened during the load


def test_config_set_under_load_drops_nothing(platform: Harness, admin: Key, app) -> None:
    name, _ = app
    with load(platform, name) as traffic:
        time.sleep(0.5)
        r = platform.ssh(admin, "config:set", "--app", name, "GREETING=hi")
        time.sleep(1.0)
    assert r.returncode == 0, r.stderr
    assert traffic.result.failed == 0, traffic.result.summary()
    assert any(b.endswith(" hi") for b in traffic.result.bodies)


def test_failed_deploy_under_load_drops_nothing(platform: Harness, admin: Key, app) -> None:
    name, work = app
    (work / "Dockerfile").write_text('FROM deis/stack:bookworm\nCMD ["python3", "-c", "exit(3)"]\n')
    platform.git(work, "commit", "-qam", "crashes")
    with load(platform, name) as traffic:
        time.sleep(0.5)
        r = platform.push(work, admin)
        time.sleep(0.5)
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")
    assert r.returncode != 0
    assert traffic.result.failed == 0, traffic.result.summary()
    assert traffic.result.sent > 20


def container(platform: Harness, name: str):
    client = docker.from_env()
    (c,) = [client.containers.get(n) for n in platform.containers(name)]
    return c


def routed_ports(platform: Harness, name: str) -> set[str]:
    return {r.rsplit(":", 1)[1] for r in Store.of(platform.settings).get(f"apps/{name}/routes") or []}


def test_killed_container_leaves_the_router_within_1s_and_serves_again_within_3s(
    platform: Harness, app
) -> None:
    """The reconciler follows the engine's events: a die is seen at once, not at the next poll."""
    name, _ = app
    c = container(platform, name)
    port = c.attrs["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"]
    assert routed_ports(platform, name) == {port}
    began = time.monotonic()
    c.kill(signal="SIGKILL")
    while port in routed_ports(platform, name):
        assert time.monotonic() - began < 1.0, "still routed 1 s after the kill"
        time.sleep(0.01)
    platform.wait_for(name, "", timeout=5)
    took = time.monotonic() - began
    assert took < 3.0, took
    assert platform.containers(name) == [c.name]
    platform.wait_steady(name)


def test_removed_container_is_replaced_within_3s(platform: Harness, app) -> None:
    name, _ = app
    c = container(platform, name)
    began = time.monotonic()
    c.remove(force=True)
    platform.wait_for(name, "", timeout=10)
    took = time.monotonic() - began
    assert took < 3, took
    assert platform.containers(name) == [c.name]
    assert container(platform, name).id != c.id
    platform.wait_steady(name)


def test_appliance_restart_never_interrupts_serving_apps(platform: Harness, app) -> None:
    """Its container restarted 20 times in a row (SIGTERM, start): every request is answered."""
    name, _ = app
    platform.wait_steady(name)  # from a router at rest, whatever the tests before it did
    took = []
    with load(platform, name) as traffic:
        time.sleep(0.3)
        for _ in range(20):
            took.append(platform.restart_appliance())
        time.sleep(0.5)
    assert traffic.result.failed == 0, traffic.result.summary()
    assert traffic.result.sent > 100, traffic.result.summary()
    print(f"20 restarts: median {sorted(took)[10]:.2f} s, longest {max(took):.2f} s")


def test_stale_lock_of_a_crashed_deploy_expires(platform: Harness, admin: Key, app) -> None:
    name, work = app
    store = Store.of(platform.settings)
    # What a deploy that died without releasing leaves behind: a lock that nobody renews.
    assert store.create(f"locks/{name}", {"owner": "crashed", "token": "x", "since": time.time()}, ttl=3)
    platform.commit_change(work, "message.txt", "after the stale lock\n")
    began = time.monotonic()
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert "waiting for crashed to finish" in r.stderr
    assert time.monotonic() - began >= 2
    assert platform.get(name)[1].startswith("after the stale lock")


def test_push_fails_at_once_when_asked_not_to_wait(platform: Harness, admin: Key, app) -> None:
    name, work = app
    store = Store.of(platform.settings)
    assert store.create(f"locks/{name}", {"owner": "bob", "token": "y", "since": time.time()}, ttl=30)
    try:
        env_cmd = platform.git_env(admin)["GIT_SSH_COMMAND"] + " -o SetEnv=DEIS_NO_WAIT=1"
        r = platform.git(work, "-c", f"core.sshCommand={env_cmd}", "push", "deis", "master", check=False)
        assert r.returncode != 0
        assert "is busy: bob has been deploying it" in r.stderr
    finally:
        store.delete(f"locks/{name}")


def test_old_release_images_are_collected_and_rollback_images_stay_in_the_registry(
    platform: Harness, admin: Key
) -> None:
    name = unique("gc")
    work = platform.checkout("hello", name)
    tags = []
    for i in range(platform.settings.keep_images + 2):
        platform.commit_change(work, "message.txt", f"gc {i}\n")
        r = platform.push(work, admin)
        assert r.returncode == 0, r.stderr
        tags.append(
            f"{platform.settings.registry}/{name}:git-{platform.git(work, 'rev-parse', 'HEAD').stdout[:8]}"
        )
    client = docker.from_env()
    local = {
        t for image in client.images.list(name=f"{platform.settings.registry}/{name}") for t in image.tags
    }
    assert local == set(tags[-platform.settings.keep_images :])
    # The oldest is gone from the host but still in the registry, where a rollback finds it.
    repo, _, tag = tags[0].rpartition(":")
    client.images.pull(repo, tag=tag, auth_config=platform.settings.registry_auth().auth_config())


def test_a_restart_interrupted_by_a_crash_is_cleaned_up(platform: Harness, admin: Key, app) -> None:
    """What a crash mid-ps:restart leaves: the old container moved aside (an older platform named it
    NAME.retiring), then maybe its replacement beside it. Alone, the moved one is still the process
    and keeps serving; beside a replacement, the older of the two is removed once the newer serves."""
    name, _ = app
    c = container(platform, name)
    c.rename(f"{c.name}.retiring")
    platform.wait_steady(name)
    r = platform.ssh(admin, "ps", "--json", "--app", name)
    assert r.returncode == 0, r.stderr
    assert [(p["process"], p["state"]) for p in json.loads(r.stdout)] == [("cmd.1", "running")]
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    parsed = ContainerName.parse(c.name)
    assert parsed is not None
    spec = ProcessSpec(parsed, c.attrs["Config"]["Image"], None, env, port=int(env["PORT"]))
    replacement = DockerBackend(str(platform.settings.state_dir)).start(spec)  # then the crash
    client = docker.from_env()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = client.containers.list(all=True, filters={"name": f"{c.name}.retiring"})
        if not left and [x.id for x in client.containers.list(filters={"name": f"^/{c.name}$"})] == [
            replacement.id
        ]:
            break
        time.sleep(0.2)
    assert client.containers.list(all=True, filters={"name": f"{c.name}.retiring"}) == []
    assert platform.containers(name) == [c.name]
    platform.wait_for(name, "", timeout=10)
