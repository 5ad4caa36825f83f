"""The appliance as a container the engine supervises: killed, it is back by itself; replaced by other
code (`deis up` from a newer checkout), it hands over with apps serving and a push in flight completing;
new sessions wait while `up` replaces components; an appliance of the previous layout (a host process)
is taken over. Real engine, stock ssh and git, the zero-downtime load."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from appliance import components, handover, processes
from builders import appliance_image
from gitserver.admin import appliance_service
from tests.harness import Harness, Key, unique
from tests.load import Load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app(platform: Harness, admin: Key) -> tuple[str, Path]:
    name = unique("sup")
    work = platform.checkout("hello", name)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return name, work


def load(platform: Harness, name: str) -> Load:
    return Load(platform.settings.http_port, f"{name}.{platform.settings.domain}", workers=3)


def test_a_killed_appliance_is_back_within_5s_and_apps_serve_throughout(
    platform: Harness, admin: Key, app: tuple[str, Path]
) -> None:
    name, work = app
    platform.wait_steady(name)
    before = platform.appliance_container()
    with load(platform, name) as traffic:
        time.sleep(0.3)
        platform.settings.appliance_ready.unlink()
        began = time.monotonic()
        os.kill(platform.appliance_pid(), signal.SIGKILL)  # a crash (`docker kill` would count as a stop)
        platform.wait_appliance(timeout=5.0)
        back = time.monotonic() - began
        r = platform.ssh(admin, "apps:list", timeout=30)
        answered = time.monotonic() - began
        time.sleep(0.3)
    assert traffic.result.failed == 0, traffic.result.summary()
    assert r.returncode == 0, r.stderr
    assert answered < 5.0, (back, answered)
    after = platform.appliance_container()
    assert after.id == before.id and after.attrs["RestartCount"] == before.attrs["RestartCount"] + 1
    print(f"appliance SIGKILL: listening again after {back:.2f} s, a command answered after {answered:.2f} s")
    # Pushes work again with no one acting.
    platform.commit_change(work, "message.txt", "after the kill\n")
    assert platform.push(work, admin).returncode == 0
    platform.wait_for(name, "after the kill")


def test_status_shows_the_appliance_container(platform: Harness) -> None:
    r = subprocess.run([*deis(platform), "status"], capture_output=True, text=True, timeout=60, check=False)
    line = next(x for x in r.stdout.splitlines() if x.startswith("appliance"))
    assert "running" in line and components.container_name(platform.settings, "appliance") in line, r.stdout


def deis(h: Harness) -> list[str]:
    import sys

    return [sys.executable, "-m", "gitserver.admin", "--state-dir", str(h.settings.state_dir)]


def test_sessions_wait_while_up_replaces_components(platform: Harness, admin: Key) -> None:
    released = threading.Event()

    def upgrade() -> None:
        with handover.upgrading(platform.settings, platform.out, list):
            released.wait(10)

    t = threading.Thread(target=upgrade)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while not platform.settings.upgrade_marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cmd = subprocess.Popen(
            [*platform.ssh_argv(admin), "git@127.0.0.1", "apps:list"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)
        assert cmd.poll() is None, "the command ran during the upgrade"
    finally:
        released.set()
        t.join()
    _, err = cmd.communicate(timeout=30)
    assert cmd.returncode == 0, err
    assert "the platform is being upgraded, waiting" in err


def test_newer_code_hands_over_under_load_and_a_push_in_flight_completes(
    platform: Harness, admin: Key, app: tuple[str, Path], tmp_path: Path
) -> None:
    """`deis up` from a newer checkout: the running appliance (here: made from this checkout plus one
    file, so another image) is replaced while a push runs in it and the app is under load."""
    marker = tmp_path / "OLDER"
    marker.write_text("an older checkout\n")
    older = appliance_image.ensure(platform.out, [*appliance_image.current_files(), ("src/OLDER", marker)])
    try:
        upgrade_under_load(platform, admin, app, older)
    finally:
        platform.start_appliance()
        docker.from_env().images.remove(older)


def upgrade_under_load(platform: Harness, admin: Key, app: tuple[str, Path], older: str) -> None:
    name, work = app
    handover.start_appliance(platform.settings, platform.out, appliance_service(platform.settings), older)
    assert platform.appliance_container().image.tags == [older]
    platform.wait_steady(name)
    platform.commit_change(work, "message.txt", "pushed during the upgrade\n")
    with load(platform, name) as traffic:
        push = subprocess.Popen(
            ["git", "push", "deis", "master"], cwd=work, env=platform.git_env(admin),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # the push is under way in the older appliance
        began = time.monotonic()
        platform.start_appliance()  # what `deis up` does for the appliance
        took = time.monotonic() - began
        _, err = push.communicate(timeout=300)
        time.sleep(0.5)
    assert push.returncode == 0, err
    assert "done," in err
    assert traffic.result.failed == 0, traffic.result.summary()
    assert platform.appliance_container().image.tags == [appliance_image.tag()]
    assert (
        handover._others(platform.settings, components.container_name(platform.settings, "appliance")) == []
    )
    platform.wait_for(name, "pushed during the upgrade")
    assert platform.ssh(admin, "apps:list").returncode == 0
    print(f"appliance handover with a push in flight: {took:.2f} s")


def test_an_appliance_process_of_the_previous_layout_is_taken_over(
    platform: Harness, admin: Key, app: tuple[str, Path]
) -> None:
    name, _ = app
    platform.stop_appliance()
    service = appliance_service(platform.settings)
    processes.start(service, platform.settings, platform.out)  # as the previous `deis up` did
    try:
        assert platform.ssh(admin, "apps:list").returncode == 0
        with load(platform, name) as traffic:
            time.sleep(0.3)
            platform.start_appliance()
            time.sleep(0.3)
        assert processes.running_pid(service, platform.settings) is None
    finally:
        processes.stop(service, platform.settings, platform.out)
        if not handover.appliance_running(platform.settings):
            platform.start_appliance()
    assert traffic.result.failed == 0, traffic.result.summary()
    assert handover.appliance_running(platform.settings)
    assert platform.ssh(admin, "apps:list").returncode == 0


def test_deis_up_again_changes_nothing_and_new_settings_hand_over_under_load(
    platform: Harness, admin: Key, app: tuple[str, Path]
) -> None:
    """`deis up` is idempotent (every container left as it is); with changed settings it hands the
    appliance over; apps serve throughout and pushes work after."""
    name, work = app
    platform.wait_steady(name)
    ids = {c: docker_id(platform, c) for c in components.COMPONENTS}
    try:
        with load(platform, name) as traffic:
            again = subprocess.run(
                [*deis(platform), "up"], capture_output=True, text=True, timeout=600, check=False
            )
            assert {c: docker_id(platform, c) for c in components.COMPONENTS} == ids
            changed = subprocess.run(
                [*deis(platform), "up", "--build-env", "SUP_TEST=1"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            time.sleep(0.3)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 4, again.stdout
        assert changed.returncode == 0, changed.stderr
        assert "handing over from" in changed.stdout, changed.stdout
        assert traffic.result.failed == 0, traffic.result.summary()
        after = {c: docker_id(platform, c) for c in components.COMPONENTS}
        assert after["appliance"] != ids["appliance"]
        assert {c: i for c, i in after.items() if c != "appliance"} == {
            c: i for c, i in ids.items() if c != "appliance"
        }
        platform.commit_change(work, "message.txt", "after deis up\n")
        assert platform.push(work, admin).returncode == 0
        platform.wait_for(name, "after deis up")
    finally:
        platform.settings.save()  # the harness's own settings again
        platform.start_appliance()


def docker_id(h: Harness, component: str) -> str:
    return str(docker.from_env().containers.get(components.container_name(h.settings, component)).id)


def test_a_router_of_another_version_hands_over_under_load(
    platform: Harness, admin: Key, app: tuple[str, Path]
) -> None:
    """`deis up` with a remade router image: the new nginx listens beside the old one (reuseport),
    the old one quits gracefully; nothing fails, and the router still takes new routes after."""
    name, _ = app
    platform.wait_steady(name)
    first = docker_id(platform, "router")
    took = []
    try:
        with load(platform, name) as traffic:
            for image_id in ("sha256:another-version", None):  # there and back: two handovers
                time.sleep(0.3)
                began = time.monotonic()
                components.start_router(platform.settings, platform.out, image_id=image_id)
                took.append(time.monotonic() - began)
            time.sleep(0.5)
    finally:
        if docker_id(platform, "router") == first:
            components.start_router(platform.settings, platform.out)
    assert traffic.result.failed == 0, traffic.result.summary()
    assert docker_id(platform, "router") != first
    routers = docker.from_env().containers.list(
        all=True,
        filters={
            "label": [
                f"{components.LABEL_PLATFORM}={platform.settings.state_dir}",
                f"{components.LABEL_COMPONENT}=router",
            ]
        },
    )
    assert len(routers) == 1
    r = platform.ssh(admin, "config:set", "--app", name, "GREETING=after-the-handover")
    assert r.returncode == 0, r.stderr
    platform.wait_for(name, "after-the-handover", timeout=10)
    print(f"router handovers: {', '.join(f'{t:.2f} s' for t in took)}")
