"""Service records and who may do what (releaser.services), against a real etcd."""

from __future__ import annotations

import pytest

from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from releaser import apps, services
from releaser.apps import User
from releaser.store import Store
from tests.harness import unique

OWNER, ADMIN, COLLAB, STRANGER = User("o", False), User("root", True), User("c", False), User("s", False)


def test_authorization_matrix(store: Store) -> None:
    name, app = unique("db"), unique("web")
    services.create(store, name, "postgres", OWNER.name)
    apps.create_app(store, app, OWNER.name)
    apps.add_collaborator(store, app, COLLAB.name)
    # before the link, the app's collaborator is a stranger to the service
    with pytest.raises(NotFound, match="does not exist or is not yours"):
        services.authorize(store, COLLAB, name)
    services.add_link(store, name, app, "DATABASE_URL", OWNER.name)
    assert services.authorize(store, OWNER, name, manage=True).links == {app: "DATABASE_URL"}
    assert services.authorize(store, ADMIN, name, manage=True).owner == OWNER.name
    assert services.authorize(store, COLLAB, name).name == name  # may use it
    with pytest.raises(PermissionDenied, match=f"only the owner of service {name}"):
        services.authorize(store, COLLAB, name, manage=True)
    for manage in (False, True):
        with pytest.raises(NotFound):
            services.authorize(store, STRANGER, name, manage=manage)
    assert name not in [s.name for s in services.visible(store, STRANGER)]
    assert name in [s.name for s in services.visible(store, COLLAB)]
    assert [s.name for s in services.linked_to(store, app)] == [name]
    with pytest.raises(Conflict, match="linked to"):
        services.add_link(store, name, app, "OTHER_URL", OWNER.name)
    assert services.remove_link(store, name, app)
    assert services.linked_to(store, app) == []
    services.forget(store, name)
    assert services.get(store, name) is None


def test_bad_input_changes_nothing(store: Store) -> None:
    with pytest.raises(ValidationError, match="invalid service name 'Bad'"):
        services.create(store, "Bad", "redis", OWNER.name)
    with pytest.raises(ValidationError, match="unknown service kind 'mysql'"):
        services.create(store, unique("x"), "mysql", OWNER.name)
    name = unique("r")
    services.create(store, name, "redis", OWNER.name)
    with pytest.raises(Conflict, match="already exists"):
        services.create(store, name, "postgres", STRANGER.name)
    assert services.get(store, name).kind == "redis"  # type: ignore[union-attr]
    for daily, keep in (("24:00", 3), ("3:30", 3), ("03:30", 0), ("03:30", 1000)):
        with pytest.raises(ValidationError):
            services.set_schedule(store, name, daily, keep)
    assert services.get_schedule(store, name) is None
    services.set_schedule(store, name, "03:30", 7)
    assert services.get_schedule(store, name) == {"time": "03:30", "keep": 7}
