from core.names import ContainerName
from scheduler.base import ProcessSpec
from scheduler.docker import network_name, one_off_argv, one_off_kwargs, run_kwargs
from scheduler.health import HealthCheck
from scheduler.rollout import Deployment, plan
from scheduler.rollout import spec as rollout_spec


def deployment(**kw) -> Deployment:
    base = dict(
        app="app",
        version=3,
        image="r/app:git-1",
        procfile={},
        port=5000,
        config={"K": "v"},
        formation={"cmd": 1},
    )
    base.update(kw)
    return Deployment(**base)  # type: ignore[arg-type]


def test_plan_for_an_image_command() -> None:
    (spec,) = plan(deployment())
    assert spec == ProcessSpec(
        name=ContainerName("app", 3, "cmd", 1),
        image="r/app:git-1",
        command=None,
        env={"K": "v", "PORT": "5000", "DEIS_APP": "app", "DEIS_RELEASE": "v3", "DYNO": "cmd.1"},
        port=5000,
    )


def test_plan_for_procfile_types() -> None:
    specs = plan(
        deployment(procfile={"web": "serve", "worker": "work"}, formation={"web": 2, "worker": 1, "cmd": 1})
    )
    assert [str(s.name) for s in specs] == ["app_v3.web.1", "app_v3.web.2", "app_v3.worker.1"]
    assert specs[0].command == ["/bin/sh", "-c", "serve"]
    assert specs[0].port == 5000 and specs[2].port is None  # only web/cmd are routed


def test_platform_env_wins_over_config() -> None:
    (spec,) = plan(deployment(config={"DEIS_APP": "spoof", "PORT": "5000"}))
    assert spec.env["DEIS_APP"] == "app"


def test_run_kwargs_publish_on_loopback_only() -> None:
    (spec,) = plan(deployment())
    kw = run_kwargs(spec, "/var/lib/deis", 40000)
    assert kw["ports"] == {"5000/tcp": ("127.0.0.1", 40000)}
    assert kw["name"] == "app_v3.cmd.1"
    assert kw["labels"]["io.deis.platform"] == "/var/lib/deis"
    assert kw["restart_policy"] == {"Name": "unless-stopped"}
    assert kw["environment"]["K"] == "v"


def test_healthcheck_from_config() -> None:
    assert HealthCheck.from_config({}, 30) == HealthCheck(None, 30, 0)
    hc = HealthCheck.from_config(
        {"HEALTHCHECK_URL": "/health", "HEALTHCHECK_TIMEOUT": "5", "HEALTHCHECK_INITIAL_DELAY": "1.5"}, 30
    )
    assert hc == HealthCheck("/health", 5.0, 1.5)


def test_the_backend_is_chosen_by_name() -> None:
    import pytest

    import scheduler
    from core.errors import ValidationError
    from scheduler.docker import DockerBackend

    assert isinstance(scheduler.create("docker", platform="/state"), DockerBackend)
    with pytest.raises(ValidationError, match="unknown scheduler 'x'; choose docker"):
        scheduler.create("x", platform="/state")


def test_every_container_is_confined_and_one_offs_keep_config_out_of_argv() -> None:
    (spec,) = plan(deployment(default_memory=1 << 30, pids_limit=512, memory={"web": 64 << 20}))
    kw = run_kwargs(spec, "/var/lib/deis", 40000, "deis-apps-x")
    assert {k: kw[k] for k in ("network", "cap_drop", "security_opt", "pids_limit", "mem_limit")} == {
        "network": "deis-apps-x",
        "cap_drop": ["NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 512,
        "mem_limit": 1 << 30,  # the default: cmd has no limit of its own
    }
    one = rollout_spec(deployment(pids_limit=64), "run", 1, ["sh"])
    kw = one_off_kwargs(one, "/var/lib/deis", "deis-apps-x", interactive=True, tty=False)
    assert kw["environment"]["K"] == "v" and kw["stdin_open"] and kw["pids_limit"] == 64
    assert "auto_remove" not in kw
    argv = one_off_argv(one, interactive=True, tty=False)
    assert argv == ["docker", "start", "--attach", "--interactive", "app_v3.run.1"]
    assert one_off_argv(one, interactive=False, tty=True) == [
        "setsid",
        "--ctty",
        "docker",
        "start",
        "--attach",
        "app_v3.run.1",
    ]
    assert network_name("/var/lib/deis") == network_name("/var/lib/deis") != network_name("/srv/deis")


def test_linked_networks_and_volumes_reach_the_containers_of_their_types() -> None:
    d = deployment(
        procfile={"web": "serve", "worker": "work"},
        formation={"web": 1, "worker": 1},
        networks=("deis-link-abc",),
        mounts={"web": (("/s/volumes/app/data", "/app/data"),)},
    )
    web, worker = plan(d)
    assert web.networks == worker.networks == ("deis-link-abc",)
    assert web.mounts == (("/s/volumes/app/data", "/app/data"),) and worker.mounts == ()
    kw = run_kwargs(web, "/s", 40000, "net")
    assert kw["volumes"] == {"/s/volumes/app/data": {"bind": "/app/data", "mode": "rw"}}
    assert "volumes" not in run_kwargs(worker, "/s", None, "net")
