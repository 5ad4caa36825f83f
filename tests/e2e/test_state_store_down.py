"""etcd down: SSH users get one line and status 1 (not "Connection closed"), apps keep serving, and
everything works again once etcd is back, with no one restarting the appliance."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance import components, services
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

MESSAGE = " !     platform state store unavailable, try again shortly"


def stop_etcd(h: Harness) -> None:
    assert services.stop_component(components.container_name(h.settings, "etcd"), h.out)


def start_etcd(h: Harness) -> None:
    components.start_etcd(h.settings, h.out)


def test_etcd_down_gives_one_line_and_recovers(platform: Harness, tmp_path: Path) -> None:
    # The session's platform: its etcd is back before this test returns (a private platform would spend
    # a minute seeding its registry). Tests run one at a time, so no other test sees the outage.
    h = platform
    owner: Key = h.add_user(unique("sdo"))
    stranger = h.key(unique("sdx"))
    app = unique("sdn")
    work = h.checkout("hello", app)
    assert h.push(work, owner).returncode == 0
    h.wait_steady(app)

    stop_etcd(h)
    try:
        for key in (owner, stranger):  # a key that cannot be checked gets the same line, and nothing runs
            r = h.ssh(key, "apps:list", timeout=30)
            assert r.returncode == 1, r
            assert r.stderr.strip().splitlines() == [MESSAGE.strip()], r.stderr
            assert r.stdout == ""
        h.commit_change(work, "CHANGED", "1")
        pushed = h.push(work, owner)
        assert pushed.returncode != 0
        assert "platform state store unavailable" in pushed.stderr
        # The app keeps serving through the outage: the reconciler must not act on an empty view.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert h.get(app)[0] == 200
            time.sleep(0.2)
    finally:
        start_etcd(h)

    r = h.ssh(owner, "apps:list", timeout=30)
    assert r.returncode == 0, r.stderr
    assert app in r.stdout
    # Refused again once keys can be checked.
    assert h.ssh(stranger, "apps:list", timeout=30).returncode == 255
