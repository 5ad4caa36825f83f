import pytest

from core.errors import NotFound, ValidationError
from core.records import Build, Release
from releaser.releases import apply_config, parse_version
from releaser.store import Store


def test_parse_version() -> None:
    assert parse_version("v3") == 3
    assert parse_version("12") == 12
    for bad in ("v0", "x", "v-1", ""):
        with pytest.raises(ValidationError):
            parse_version(bad)


def test_apply_config_keeps_values_exactly() -> None:
    odd = "a 'b' \"c\" $(d) `e`\nf = ü"
    assert apply_config({"A": "1"}, {"B": odd}) == {"A": "1", "B": odd}
    assert apply_config({"A": "1", "B": "2"}, {"A": None}) == {"B": "2"}
    with pytest.raises(NotFound):
        apply_config({}, {"A": None})
    with pytest.raises(ValidationError):
        apply_config({}, {"1A": "x"})


def test_release_json_round_trip() -> None:
    b = Build(
        image="r/app:git-1234abcd", kind="dockerfile", sha="1234abcd" * 5, procfile={"web": "run"}, port=8000
    )
    r = Release("app", 4, b, {"K": "v"}, "alice deployed 1234abc", "alice", 1.5)
    assert Release.from_json("app", r.to_json()) == r
    assert r.label == "v4"


def test_default_formation() -> None:
    assert Build("i", "dockerfile").default_formation() == {"cmd": 1}
    assert Build("i", "dockerfile", procfile={"web": "a", "worker": "b"}).default_formation() == {"web": 1}
    assert Build("i", "dockerfile", procfile={"worker": "b"}).default_formation() == {}
    assert Build("i", "dockerfile", procfile={"worker": "b", "web": "a"}).process_types == ["web", "worker"]


def test_latest_follows_the_current_pointer_and_survives_a_stale_one(store: Store) -> None:
    from releaser import releases

    app = "pointy"
    assert releases.latest(store, app) is None
    v1 = releases.initial(store, app, "alice")
    v2 = releases.record(store, releases.prepare(store, app, by="alice", summary="s", config={"A": "1"}))
    assert (v1.version, v2.version) == (1, 2)
    assert releases.latest(store, app) == v2
    # A writer that died after recording v3 but before moving the pointer:
    v3 = releases.prepare(store, app, by="bob", summary="t", config={"A": "2"})
    store.create(f"apps/{app}/releases/{v3.version:06d}", v3.to_json())
    assert releases.latest(store, app) == v3
