"""Reused app names (issue 17): a destroyed app's images that other apps deployed stay in the registry
under its name. A stranger must neither deploy them (builds:create) nor take the name while they
are in use (a build of theirs could take the same tag); once no app runs them they are deleted and
the name is free again, with none of the old app's images."""

from __future__ import annotations

import json

import pytest

from tests.e2e.traces import registry_get
from tests.harness import Harness, unique

pytestmark = pytest.mark.e2e


def ok(r) -> None:  # type: ignore[no-untyped-def]
    assert r.returncode == 0, r.stdout + r.stderr


def one_error(r) -> str:  # type: ignore[no-untyped-def]
    assert r.returncode != 0, r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(" !     "), r.stderr
    return lines[0]


def registry_tags(platform: Harness, repo: str) -> list[str]:
    status, body = registry_get(platform, f"{repo}/tags/list")
    assert status in (200, 404), status
    return list((body or {}).get("tags") or [])


def test_a_destroyed_apps_name_and_images_stay_its_own(platform: Harness) -> None:
    vic, mallory = platform.add_user("vic"), platform.add_user("mallory-names")
    name, runner, mine = unique("named"), unique("runner"), unique("mine")
    ok(platform.push(platform.checkout("hello", name), vic))
    (build,) = json.loads(platform.ssh(vic, "builds", "--app", name, "--json").stdout)
    ok(platform.ssh(vic, "apps:create", runner))
    ok(platform.ssh(vic, "builds:create", build["image"], "--app", runner))
    ok(platform.ssh(vic, "apps:destroy", name, "--confirm", name))
    ok(platform.ssh(mallory, "apps:create", mine))

    # The stranger can neither deploy the destroyed app's image nor take its name.
    err = one_error(platform.ssh(mallory, "builds:create", build["image"], "--app", mine))
    assert err == (
        f" !     image {build['image']} is of the destroyed app {name}: only the people of the apps"
        " that run it may deploy it"
    )
    err = one_error(platform.ssh(mallory, "apps:create", name))
    assert err == (
        f" !     the name {name} is still held: other apps run images of the destroyed app {name};"
        " choose another name"
    )
    r = platform.push(platform.checkout("hello", name), mallory)
    assert r.returncode != 0 and "is still held" in r.stderr
    # The people of the app that runs it still may (a new app of theirs, say).
    ok(platform.ssh(vic, "builds:create", build["image"], "--app", runner))

    # Once nothing runs them, the images go with the next claim of the name, which is then free.
    ok(platform.ssh(vic, "apps:destroy", runner, "--confirm", runner))
    err = one_error(platform.ssh(mallory, "builds:create", build["image"], "--app", mine))
    assert "is of the destroyed app" in err
    assert registry_tags(platform, name) != []
    ok(platform.ssh(mallory, "apps:create", name))
    assert registry_tags(platform, name) == []
    err = one_error(platform.ssh(mallory, "builds:create", build["image"], "--app", name))
    assert err == f" !     image {build['image']} is not in the platform registry"
    ok(platform.ssh(mallory, "apps:destroy", name, "--confirm", name))
    ok(platform.ssh(mallory, "apps:destroy", mine, "--confirm", mine))
