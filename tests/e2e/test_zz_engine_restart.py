"""dockerd restarting (or the whole host): every app comes back to its formation.

Restarting dockerd stops every container on the host, so this runs only where the platform's own
bring-up started dockerd (CI: `./platform up`) and DEIS_TEST_RESTART_DOCKERD=1 says so (a shared
machine's engine is not the suite's to restart), and last (file name), after the other modules.
"""

from __future__ import annotations

import os

import pytest

from appliance import components, processes, services
from core.settings import Settings
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


def owned_dockerd() -> Settings | None:
    owner = Settings.load(os.environ.get("DEIS_STATE_DIR"))
    return owner if processes.running_pid(services.dockerd_service(owner), owner) else None


# Stopping dockerd stops every container on the host, other people's too: only when asked for.
OPT_IN = "DEIS_TEST_RESTART_DOCKERD"


@pytest.mark.skipif(os.environ.get(OPT_IN) != "1", reason=f"restarts the shared dockerd: set {OPT_IN}=1")
@pytest.mark.skipif(owned_dockerd() is None, reason="dockerd was not started by this platform's bring-up")
def test_engine_and_host_restart_restore_every_app(platform: Harness, admin: Key) -> None:
    owner = owned_dockerd()
    assert owner is not None
    name = unique("reboot")
    work = platform.checkout("hello", name)
    assert platform.push(work, admin).returncode == 0
    before = platform.containers(name)

    # dockerd alone: the containers stop and come back; the appliance's reconciler re-routes them.
    services.stop_dockerd(owner, platform.out)
    services.ensure_dockerd(owner, platform.out)
    platform.wait_for(name, "hello from v1", timeout=60)
    assert platform.containers(name) == before

    # The whole host: everything stops; the bring-up command restores it all.
    platform.stop_appliance()
    components.down(platform.settings, platform.out)
    services.stop_dockerd(owner, platform.out)
    services.ensure_dockerd(owner, platform.out)
    platform.up()
    platform.wait_for(name, "hello from v1", timeout=60)
    assert platform.containers(name) == before
