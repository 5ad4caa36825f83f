"""The pure parts of addons.engine and addons.kinds: names, container arguments, helper argv, URLs."""

from __future__ import annotations

from pathlib import Path

from addons import engine
from addons.kinds import DATA, KINDS, POSTGRES, REDIS, SECRET, SECRET_DIR


def test_names_differ_per_platform_service_and_app() -> None:
    a, b = "/var/lib/deis", "/tmp/other"
    assert engine.container_name(a, "db").startswith("db.service.")
    assert engine.container_name(a, "db") != engine.container_name(b, "db")
    assert engine.home_network(a, "db") != engine.home_network(a, "db2")
    assert engine.link_network(a, "db", "web") != engine.link_network(a, "db", "web2")
    assert engine.link_network(a, "db", "web") != engine.link_network(b, "db", "web")
    # no concatenation ambiguity: ("db-x", "y") and ("db", "x-y") name different networks
    assert engine.link_network(a, "db-x", "y") != engine.link_network(a, "db", "x-y")


def test_run_kwargs_of_a_postgres_service() -> None:
    where = engine.paths(Path("/s"), "db")
    kw = engine.run_kwargs(
        POSTGRES, "db", "/s", "deis/addons:bookworm", where, memory=1 << 30, pids_limit=512
    )
    assert kw["command"] == ["/bin/sh", "-c", POSTGRES.run_script]
    assert kw["volumes"] == {
        "/s/services/db/data": {"bind": DATA, "mode": "rw"},
        "/s/services/db/secret": {"bind": SECRET_DIR, "mode": "ro"},
    }
    assert kw["restart_policy"] == {"Name": "unless-stopped"}
    assert kw["network"] == engine.home_network("/s", "db")
    assert kw["labels"] == {
        "io.deis.platform": "/s",
        "io.deis.service": "db",
        "io.deis.service-kind": "postgres",
    }
    assert kw["mem_limit"] == 1 << 30 and kw["pids_limit"] == 512
    assert kw["cap_drop"] == ["NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE"]
    assert kw["security_opt"] == ["no-new-privileges"]
    assert kw["healthcheck"]["test"] == list(POSTGRES.health)
    assert "environment" not in kw  # the password is a mounted file, never in the container's config


def test_scripts_read_the_password_from_the_file_only() -> None:
    for kind in KINDS.values():
        assert f"$(cat {SECRET})" in kind.run_script
        for argv in (kind.backup, kind.connect, kind.health):
            assert not any("PASSWORD=" in a and "$(" not in a for a in argv)


def test_redis_restore_helper_has_no_network_and_no_secret() -> None:
    where = engine.paths(Path("/s"), "c")
    argv = engine.redis_restore_argv("deis/addons:bookworm", where)
    assert argv[:4] == ["docker", "run", "--rm", "--pull"]
    assert argv[argv.index("--network") + 1] == "none"
    assert "-i" in argv and f"/s/services/c/data:{DATA}" in argv
    assert "/s/services/c/secret" not in " ".join(argv)
    assert "redis-check-rdb" in argv[-1]


def test_urls_quote_the_password() -> None:
    assert POSTGRES.url("db", "a/b@c") == "postgres://app:a%2Fb%40c@db:5432/app"
    assert REDIS.url("cache", "pw") == "redis://:pw@cache:6379/0"


def test_password_file_is_root_only(tmp_path: Path) -> None:
    where = engine.paths(tmp_path, "db")
    engine.new_password(where)
    assert where.password.stat().st_mode & 0o777 == 0o600
    assert where.root.stat().st_mode & 0o777 == 0o700
    secret = engine.password(where)
    assert len(secret) >= 32 and all(c.isalnum() or c in "-_" for c in secret)
    engine.forget(where)
    assert not where.root.exists()
