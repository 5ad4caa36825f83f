from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Harness, Key


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One whole platform for the session: real etcd, registry, nginx, appliance; shared dockerd."""
    h = Harness(tmp_path_factory.mktemp("platform"))
    try:
        h.up()
        yield h
    finally:
        h.down()


@pytest.fixture(scope="session")
def admin(platform: Harness) -> Key:
    return platform.add_user("admin", admin=True)


@pytest.fixture(scope="session")
def alice(platform: Harness) -> Key:
    return platform.add_user("alice")
