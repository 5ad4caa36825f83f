"""Pure parts of scale, restart, logs and run: formation diffs, specs, argv, log lines."""

from __future__ import annotations

from core.names import ContainerName
from scheduler.base import LogLine
from scheduler.docker import (
    DockerLogStream,
    one_off_argv,
    one_off_kwargs,
    parse_log_line,
    parse_time,
    process_name,
)
from scheduler.rollout import Deployment, ScalePlan, scale_plan, spec


def names(*texts: str) -> list[ContainerName]:
    out = [ContainerName.parse(t) for t in texts]
    assert all(out)
    return out  # type: ignore[return-value]


def test_scale_up_takes_the_next_free_nums() -> None:
    running = names("a_v3.web.1", "a_v3.web.3")
    assert scale_plan("a", 3, ["web"], running, {"web": 4}) == ScalePlan(
        start=names("a_v3.web.2", "a_v3.web.4"), stop=[]
    )


def test_scale_down_stops_the_highest_nums_first() -> None:
    running = names("a_v3.web.1", "a_v3.web.2", "a_v3.web.3", "a_v3.worker.1")
    plan = scale_plan("a", 3, ["web", "worker"], running, {"web": 1})
    assert plan == ScalePlan(start=[], stop=names("a_v3.web.3", "a_v3.web.2", "a_v3.worker.1"))
    assert plan.routed_change


def test_scale_leaves_other_releases_and_one_off_runs_alone() -> None:
    running = names("a_v2.cmd.1", "a_v3.cmd.1", "a_v3.run.1")
    assert scale_plan("a", 3, ["cmd"], running, {"cmd": 2}) == ScalePlan(start=names("a_v3.cmd.2"), stop=[])
    assert scale_plan("a", 3, ["cmd"], running, {"cmd": 1}) == ScalePlan(start=[], stop=[])


def test_scaling_a_worker_does_not_touch_the_router() -> None:
    plan = scale_plan("a", 3, ["web", "worker"], names("a_v3.web.1"), {"web": 1, "worker": 2})
    assert plan.start == names("a_v3.worker.1", "a_v3.worker.2")
    assert not plan.routed_change


def deployment() -> Deployment:
    return Deployment(
        app="a",
        version=3,
        image="r/a:git-1",
        procfile={"web": "serve --port $PORT"},
        port=5000,
        config={"K": "it's $(here)\nkept"},
        formation={"web": 1},
    )


def test_run_spec_and_argv_keep_values_exactly() -> None:
    s = spec(deployment(), "run", 2, ["sh", "-c", "echo $K"])
    assert str(s.name) == "a_v3.run.2" and s.port is None
    kw = one_off_kwargs(s, "/state", "deis-apps-x", interactive=True, tty=True)
    assert {k: kw[k] for k in ("image", "command", "name", "environment", "labels", "stdin_open", "tty")} == {
        "image": "r/a:git-1",
        "command": ["sh", "-c", "echo $K"],
        "name": "a_v3.run.2",
        "environment": {
            "K": "it's $(here)\nkept",  # exactly: the API takes it as it is, no command line sees it
            "PORT": "5000",
            "DEIS_APP": "a",
            "DEIS_RELEASE": "v3",
            "DYNO": "run.2",
        },
        "labels": {
            "io.deis.platform": "/state",
            "io.deis.app": "a",
            "io.deis.version": "3",
            "io.deis.type": "run",
        },
        "stdin_open": True,
        "tty": True,
    }
    assert one_off_argv(s, interactive=True, tty=True) == [
        "setsid",
        "--ctty",
        "docker",
        "start",
        "--attach",
        "--interactive",
        "a_v3.run.2",
    ]


def test_a_process_type_spec_runs_its_procfile_command() -> None:
    s = spec(deployment(), "web", 4)
    assert s.command == ["/bin/sh", "-c", "serve --port $PORT"] and s.port == 5000


def test_docker_times_and_log_lines() -> None:
    assert parse_time("1970-01-01T00:00:10.250000000Z") == 10.25
    assert parse_time("1970-01-01T00:00:10Z") == 10.0
    assert parse_time("garbage") == 0.0
    assert parse_log_line(b"1970-01-01T00:00:01.5Z GET /a b\r") == LogLine(1.5, "GET /a b")


def test_log_stream_joins_split_chunks_into_lines() -> None:
    chunks = [b"1970-01-01T00:00:01Z one\n1970-01-01T00:00:02Z t", b"wo\n1970-01-01T00:00:03Z three"]
    assert list(DockerLogStream(iter(chunks))) == [LogLine(1, "one"), LogLine(2, "two"), LogLine(3, "three")]
    assert list(DockerLogStream(None)) == []


def test_a_container_moved_aside_still_runs_its_process() -> None:
    assert str(process_name("a_v3.web.1")) == "a_v3.web.1"
    assert str(process_name("/a_v3.web.1.0123456789ab")) == "a_v3.web.1"
    assert str(process_name("a_v3.web.1.retiring")) == "a_v3.web.1"  # what older platforms left
    assert process_name("a_v3.web.1.other") is None and process_name("deis-build-x") is None
