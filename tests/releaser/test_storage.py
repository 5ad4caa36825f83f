"""Volume specs (releaser.storage.parse: pure) and their records on a real etcd."""

from __future__ import annotations

import pytest

from core.errors import Conflict, NotFound, ValidationError
from releaser import storage
from releaser.store import Store
from tests.harness import unique


def test_parse_keeps_valid_specs_and_refuses_the_rest() -> None:
    v = storage.parse("uploads:/app/uploads/", ["web", "worker", "web"])
    assert v == storage.Volume("uploads", "/app/uploads", ("web", "worker"))
    assert v.applies_to("web") and v.applies_to("run") and not v.applies_to("clock")
    assert storage.parse("d:/data", None).applies_to("anything")
    for bad in ("nocolon", "Up:/x", ":/x", "d:relative", "d:/a/../b", "d:/a//b", "d:/", "d:/etc", "d:/proc/1",
                "d:/dev/shm", "d:/a b", "d:/a:b", "d:/" + "x" * 300):  # fmt: skip
        with pytest.raises(ValidationError):
            storage.parse(bad, None)
    with pytest.raises(ValidationError):
        storage.parse("d:/data", ["Web!"])


def test_records(store: Store) -> None:
    app = unique("volapp")
    storage.add(store, app, storage.parse("a:/data", None))
    with pytest.raises(Conflict, match="mounts a at /data already"):
        storage.add(store, app, storage.parse("b:/data", None))
    with pytest.raises(Conflict, match="mounts a volume a already"):
        storage.add(store, app, storage.parse("a:/other", None))
    assert [v.name for v in storage.list_volumes(store, app)] == ["a"]
    assert storage.remove(store, app, "a").path == "/data"
    with pytest.raises(NotFound):
        storage.remove(store, app, "a")
