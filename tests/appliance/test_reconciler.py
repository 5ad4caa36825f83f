from appliance.reconciler import Plan, diff
from core.names import ContainerName
from scheduler.base import Instance, ProcessSpec


def spec(name: str) -> ProcessSpec:
    n = ContainerName.parse(name)
    assert n is not None
    return ProcessSpec(name=n, image="i", command=None, env={})


def inst(name: str, state: str = "running", id: str = "", started: float = 1.0) -> Instance:
    n = ContainerName.parse(name)
    assert n is not None
    return Instance(n, id or f"id-{name}", state, None, None, started=started)


def test_nothing_to_do() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1")])


def test_missing_exited_and_stale() -> None:
    plan = diff(
        [spec("a_v3.web.1"), spec("a_v3.web.2"), spec("a_v3.worker.1")],
        [inst("a_v2.web.1"), inst("a_v3.web.1", "exited"), inst("a_v3.worker.1"), inst("a_v3.web.3")],
    )
    assert [str(i.name) for i in plan.remove] == ["a_v2.web.1", "a_v3.web.1", "a_v3.web.3"]
    assert [str(s.name) for s in plan.start] == ["a_v3.web.1", "a_v3.web.2"]


def test_restarting_containers_are_left_to_the_engine() -> None:
    assert diff([spec("a_v2.web.1")], [inst("a_v2.web.1", "restarting")]) == Plan()


def test_one_off_containers_are_left_alone() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1"), inst("a_v1.run.1"), inst("a_v2.release.1")])


def test_of_two_instances_of_a_name_the_newer_running_one_stays() -> None:
    """A restart that died half-way leaves the old instance beside its replacement."""
    old, new = inst("a_v2.web.1", id="old", started=1.0), inst("a_v2.web.1", id="new", started=2.0)
    plan = diff([spec("a_v2.web.1")], [new, old])
    assert [i.id for i in plan.remove] == ["old"] and plan.start == []
    down = inst("a_v2.web.1", "exited", id="down", started=3.0)
    assert [i.id for i in diff([spec("a_v2.web.1")], [old, down]).remove] == ["down"]
