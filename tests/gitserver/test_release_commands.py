"""Pure parts of the release/config commands: limits, tags, image references, releases' new fields."""

from __future__ import annotations

import pytest

from builders.image import Reference, exposed_port, parse_reference
from core.errors import NotFound, UsageError, ValidationError
from core.names import ContainerName
from core.records import Build, Release
from core.settings import Settings
from gitserver.commands import registry
from gitserver.commands.limits import parse_cpu, parse_memory, set_limits, unset_limits
from gitserver.commands.tags import apply_tags
from scheduler.base import ProcessSpec
from scheduler.docker import one_off_kwargs, run_kwargs
from scheduler.rollout import Deployment, plan


def test_memory_limits_are_normalized_and_checked() -> None:
    assert parse_memory("web", "512M") == "512m"
    assert parse_memory("web", "1G") == "1g"
    assert parse_memory("web", "0010m") == "10m"
    assert parse_memory("web", "8192k") == "8192k"
    for bad in ("512", "1.5G", "M", "-1m", "5m", "1t", "1 G", ""):
        with pytest.raises(ValidationError):
            parse_memory("web", bad)


def test_cpu_shares_are_checked() -> None:
    assert parse_cpu("web", "512") == 512
    for bad in ("1", "0", "x", "262145", "-5", "1.5"):
        with pytest.raises(ValidationError):
            parse_cpu("web", bad)


def test_set_and_unset_limits_leave_the_input_alone() -> None:
    old: dict = {"memory": {"web": "1g"}}
    new = set_limits(old, "memory", ["web=512M", "worker=2G"])
    assert new == {"memory": {"web": "512m", "worker": "2g"}}
    assert old == {"memory": {"web": "1g"}}
    assert set_limits(new, "cpu", ["web=512"]) == {
        "memory": {"web": "512m", "worker": "2g"},
        "cpu": {"web": 512},
    }
    assert unset_limits({"memory": {"web": "1g"}, "cpu": {"web": 2}}, "memory", ["web"]) == {
        "cpu": {"web": 2}
    }
    with pytest.raises(NotFound, match="no cpu limit is set for web"):
        unset_limits(old, "cpu", ["web"])
    with pytest.raises(UsageError):
        set_limits(old, "memory", ["web"])
    with pytest.raises(ValidationError):
        set_limits(old, "memory", ["WEB=1g"])


def test_tags() -> None:
    assert apply_tags({"a": "1"}, {"b": "x.y", "a": None}) == {"b": "x.y"}
    for bad in ({"A": "1"}, {"a": ""}, {"a": "two words"}, {"a": "x=y"}):
        with pytest.raises(ValidationError):
            apply_tags({}, bad)
    with pytest.raises(NotFound):
        apply_tags({}, {"a": None})


def test_release_limits_and_tags_round_trip_and_default_empty() -> None:
    b = Build(image="r/app:v1", kind="image", port=8000)
    r = Release(
        "app", 5, b, {}, "s", "u", 1.0, {"memory": {"web": "512m"}, "cpu": {"web": 512}}, {"env": "prod"}
    )
    assert Release.from_json("app", r.to_json()) == r
    assert (r.memory, r.cpu) == ({"web": "512m"}, {"web": 512})
    old = Release.from_json(
        "app", {"version": 2, "build": None, "config": {}}
    )  # written before limits existed
    assert (old.limits, old.tags, old.memory, old.cpu) == ({}, {}, {}, {})


def test_limits_reach_the_container_spec_and_docker() -> None:
    d = Deployment(
        "app",
        3,
        "r/app:v3",
        {"web": "serve", "worker": "w"},
        5000,
        {},
        {"web": 1, "worker": 1},
        memory={"web": 512 << 20},
        cpu={"worker": 256},
    )
    web, worker = plan(d)
    assert (web.memory, web.cpu_shares, worker.memory, worker.cpu_shares) == (512 << 20, None, None, 256)
    spec = ProcessSpec(ContainerName("app", 3, "web", 1), "img", None, {}, memory=64 << 20, cpu_shares=512)
    kw = run_kwargs(spec, "p", None)
    assert (kw["mem_limit"], kw["cpu_shares"]) == (64 << 20, 512)
    kw = one_off_kwargs(spec, "p", None, interactive=False, tty=False)
    assert (kw["mem_limit"], kw["cpu_shares"]) == (64 << 20, 512)


def test_image_references_must_be_in_the_platform_registry() -> None:
    s = Settings(registry_port=5123)
    assert parse_reference(s, "127.0.0.1:5123/tools:1.2") == Reference("127.0.0.1:5123", "tools", "1.2")
    assert parse_reference(s, "127.0.0.1:5123/team/tools") == Reference(
        "127.0.0.1:5123", "team/tools", "latest"
    )
    digest = "sha256:" + "a" * 64
    ref = parse_reference(s, f"127.0.0.1:5123/tools@{digest}")
    assert ref.reference == digest and str(ref) == f"127.0.0.1:5123/tools@{digest}"
    for bad in (
        "tools:1",
        "127.0.0.1:5000/tools:1",
        "docker.io/library/python",
        "127.0.0.1:5123/",
        "127.0.0.1:5123/a b",
    ):
        with pytest.raises(ValidationError):
            parse_reference(s, bad)


def test_exposed_port() -> None:
    assert exposed_port({"config": {"ExposedPorts": {"8080/tcp": {}}}}) == 8080
    assert exposed_port({"config": {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}}) is None
    assert exposed_port({"config": {}}) is None
    assert exposed_port({}) is None


def test_commands_are_registered_with_examples() -> None:
    names = [
        "config",
        "config:set",
        "config:unset",
        "config:push",
        "config:pull",
        "releases",
        "releases:info",
        "releases:rollback",
        "builds",
        "builds:create",
        "limits",
        "limits:set",
        "limits:unset",
        "tags",
        "tags:set",
        "tags:unset",
    ]
    for name in names:
        assert registry.lookup(name).examples, name
    _cmd, args = registry.parse(
        ["builds:create", "127.0.0.1:1/x:y", "--procfile", "web: a b", "--procfile", "w: c"]
    )
    assert args.procfile == ["web: a b", "w: c"]
    _cmd, args = registry.parse(["limits:set", "--cpu", "web=512"])
    assert (args.cpu, args.items) == (True, ["web=512"])
    assert registry.lookup("config:push").stdin
    assert "single-host docker scheduler ignores them" in registry.lookup("tags:set").summary
