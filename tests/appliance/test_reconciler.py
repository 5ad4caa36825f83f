from appliance.names import ContainerName
from appliance.reconciler import Plan, diff
from scheduler.base import ContainerSpec, Instance


def spec(name: str) -> ContainerSpec:
    n = ContainerName.parse(name)
    assert n is not None
    return ContainerSpec(name=n, image="i", command=None, env={})


def inst(name: str, state: str = "running") -> Instance:
    n = ContainerName.parse(name)
    assert n is not None
    return Instance(n, "id", state, None, None)


def test_nothing_to_do() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1")])


def test_missing_exited_and_stale() -> None:
    plan = diff(
        [spec("a_v3.web.1"), spec("a_v3.web.2"), spec("a_v3.worker.1")],
        [inst("a_v2.web.1"), inst("a_v3.web.1", "exited"), inst("a_v3.worker.1"), inst("a_v3.web.3")],
    )
    assert plan.remove == ["a_v2.web.1", "a_v3.web.1", "a_v3.web.3"]
    assert [str(s.name) for s in plan.start] == ["a_v3.web.1", "a_v3.web.2"]


def test_restarting_containers_are_left_to_the_engine() -> None:
    assert diff([spec("a_v2.web.1")], [inst("a_v2.web.1", "restarting")]) == Plan()


def test_one_off_containers_are_left_alone() -> None:
    assert not diff([spec("a_v2.web.1")], [inst("a_v2.web.1"), inst("a_v1.run.1"), inst("a_v2.release.1")])
