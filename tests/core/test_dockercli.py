"""Docker command lines are data: compared exactly, values kept as they are (no shell anywhere)."""

from __future__ import annotations

from core import dockercli
from core.dockercli import Mount, Run


def test_run_with_everything() -> None:
    argv = dockercli.run(
        Run(
            image="img:1",
            command=["sh", "-c", "echo $X"],
            name="a_v1.run.1",
            labels={"io.deis.app": "a"},
            env={"X": "it's $(not) `run`\nkept"},
            mounts=[Mount("/host/a", "/a"), Mount("/host/b", "/b", read_only=True)],
            init=True,
            interactive=True,
            tty=True,
            pull_never=True,
            memory=64 << 20,
            cpu_shares=512,
        )
    )
    assert argv == [
        "docker", "run", "--rm", "--init", "--pull", "never", "--name", "a_v1.run.1",
        "--label", "io.deis.app=a", "-i", "-t", "--memory", "67108864b", "--cpu-shares", "512",
        "-v", "/host/a:/a", "-v", "/host/b:/b:ro", "-e", "X=it's $(not) `run`\nkept",
        "img:1", "sh", "-c", "echo $X",
    ]  # fmt: skip


def test_run_minimal_keeps_the_container() -> None:
    assert dockercli.run(Run(image="img", remove=False)) == ["docker", "run", "img"]


def test_remove_and_import() -> None:
    assert dockercli.remove_force("c") == ["docker", "rm", "-f", "c"]
    assert dockercli.import_("deis/stack:bookworm", ['ENTRYPOINT ["/x"]']) == [
        "docker", "import", "--change", 'ENTRYPOINT ["/x"]', "-", "deis/stack:bookworm",
    ]  # fmt: skip


def test_run_confined() -> None:
    argv = dockercli.run(
        Run(
            image="img",
            network="deis-app-a",
            user="1000:1000",
            cap_drop=["ALL"],
            cap_add=["CHOWN"],
            security_opt=["no-new-privileges"],
            pids_limit=256,
            env_file="/state/run/env/x",
            workdir="/app",
        )
    )
    assert argv == [
        "docker", "run", "--rm", "--network", "deis-app-a", "--user", "1000:1000", "--cap-drop", "ALL",
        "--cap-add", "CHOWN", "--security-opt", "no-new-privileges", "--pids-limit", "256",
        "--workdir", "/app", "--env-file", "/state/run/env/x", "img",
    ]  # fmt: skip


def test_exec_and_logs_argv() -> None:
    argv = dockercli.exec_("db.service.x", ["psql", "-d", "app"], user="postgres", interactive=True, tty=True)
    assert argv == [
        "docker", "exec", "-i", "-t", "--user", "postgres", "db.service.x", "psql", "-d", "app",
    ]  # fmt: skip
    assert dockercli.exec_("c", ["pg_dump"], user="root", interactive=False, tty=False) == [
        "docker", "exec", "--user", "root", "c", "pg_dump",
    ]  # fmt: skip
    assert dockercli.logs("c", follow=True, tail=10) == [
        "docker",
        "logs",
        "--timestamps",
        "--tail",
        "10",
        "--follow",
        "c",
    ]
    assert dockercli.logs("c", follow=False, tail=None) == ["docker", "logs", "--timestamps", "c"]
