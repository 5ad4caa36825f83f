"""Push to deploy, end to end: stock git and ssh against the real appliance, docker, etcd, nginx."""

from __future__ import annotations

import threading

import pytest

from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e


def head(h: Harness, work) -> str:
    return h.git(work, "rev-parse", "HEAD").stdout.strip()


def remote_ref(h: Harness, work, key: Key, ref: str = "refs/heads/master") -> str | None:
    out = h.git(work, "ls-remote", "deis", ref, key=key).stdout.split()
    return out[0] if out else None


@pytest.fixture(scope="module")
def deployed(platform: Harness, admin: Key):
    """One app deployed once; tests below push on top of it."""
    app = unique("hello")
    work = platform.checkout("hello", app)
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    return app, work, r


def test_first_push_builds_releases_runs_and_routes(platform: Harness, deployed) -> None:
    app, _work, r = deployed
    out = r.stderr
    assert "remote: -----> Building Docker image (Dockerfile)" in out
    assert "remote: -----> Launching" in out
    assert f"remote: -----> done, {app}:v2 deployed" in out
    assert f"remote:        http://{app}.localhost:{platform.settings.http_port}" in out
    status, body = platform.get(app)
    assert (status, body) == (200, "hello from v1\n")
    assert platform.containers(app) == [f"{app}_v2.cmd.1"]


def test_push_of_a_change_serves_the_next_release(platform: Harness, admin: Key, deployed) -> None:
    app, work, _ = deployed
    platform.commit_change(work, "message.txt", "hello from v2\n")
    r = platform.push(work, admin)
    assert r.returncode == 0, r.stderr
    assert f"done, {app}:v3 deployed" in r.stderr
    assert platform.get(app) == (200, "hello from v2\n")
    assert platform.containers(app) == [f"{app}_v3.cmd.1"]  # the old release is retired


def test_failing_build_is_rejected_and_old_release_keeps_serving(
    platform: Harness, admin: Key, deployed
) -> None:
    app, work, _ = deployed
    before = remote_ref(platform, work, admin)
    serving = platform.get(app)
    (work / "Dockerfile").write_text("FROM deis/stack:bookworm\nRUN echo compiling && exit 3\n")
    platform.git(work, "commit", "-qam", "broken build")
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "Dockerfile build failed" in r.stderr
    assert "compiling" in r.stderr  # the build's own output was streamed
    assert "pre-receive hook declined" in r.stderr
    assert remote_ref(platform, work, admin) == before
    assert platform.get(app) == serving
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")


def test_unhealthy_release_is_rejected_and_old_release_keeps_serving(
    platform: Harness, admin: Key, deployed
) -> None:
    app, work, _ = deployed
    before = remote_ref(platform, work, admin)
    serving = platform.get(app)
    names = platform.containers(app)
    (work / "Dockerfile").write_text(
        'FROM deis/stack:bookworm\nCMD ["python3", "-c", "print(\'cannot start: no database\'); exit(4)"]\n'
    )
    platform.git(work, "commit", "-qam", "crashes on start")
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "failed its health check" in r.stderr
    assert "cannot start: no database" in r.stderr  # the container's log tail
    assert remote_ref(platform, work, admin) == before
    assert platform.get(app) == serving
    assert platform.containers(app) == names  # the new containers were removed
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")


def test_never_listening_release_times_out(platform: Harness, admin: Key, deployed) -> None:
    app, work, _ = deployed
    serving = platform.get(app)
    r = platform.ssh(admin, "config:set", "--app", app, "HEALTHCHECK_TIMEOUT=2")
    assert r.returncode == 0, r.stderr
    (work / "Dockerfile").write_text('FROM deis/stack:bookworm\nCMD ["sleep", "600"]\n')
    platform.git(work, "commit", "-qam", "never listens")
    r = platform.push(work, admin)
    assert r.returncode != 0
    assert "not healthy after 2s" in r.stderr
    assert platform.get(app) == serving
    platform.git(work, "reset", "-q", "--hard", "HEAD~1")
    r = platform.ssh(admin, "config:unset", "--app", app, "HEALTHCHECK_TIMEOUT")
    assert r.returncode == 0, r.stderr


def test_other_branches_are_stored_not_deployed(platform: Harness, admin: Key, deployed) -> None:
    app, work, _ = deployed
    serving = platform.get(app)
    platform.git(work, "checkout", "-qb", "feature")
    platform.commit_change(work, "message.txt", "feature work\n")
    r = platform.push(work, admin, "feature")
    assert r.returncode == 0, r.stderr
    assert "feature stored (not deployed" in r.stderr
    assert platform.get(app) == serving
    assert remote_ref(platform, work, admin, "refs/heads/feature") == head(platform, work)
    platform.git(work, "checkout", "-q", "master")


def test_deleting_the_deploy_branch_is_refused(platform: Harness, admin: Key, deployed) -> None:
    _app, work, _ = deployed
    before = remote_ref(platform, work, admin)
    r = platform.push(work, admin, ":master")
    assert r.returncode != 0
    assert "deleting master is not allowed" in r.stderr
    assert remote_ref(platform, work, admin) == before


def test_empty_push_changes_nothing(platform: Harness, admin: Key, deployed) -> None:
    _app, work, _ = deployed
    r = platform.push(work, admin)
    assert r.returncode == 0
    assert "Everything up-to-date" in r.stderr


def test_tree_without_dockerfile_or_buildpack_gets_a_clear_error(platform: Harness, admin: Key) -> None:
    app = unique("nodocker")
    work = platform.checkout("hello", app)
    platform.git(work, "rm", "-q", "Dockerfile")
    platform.git(work, "commit", "-qm", "no dockerfile")
    r = platform.push(work, admin)
    assert r.returncode != 0
    # no Dockerfile: a buildpack build, and no built-in buildpack detects app.py alone
    assert "no buildpack detects this app" in r.stderr
    assert remote_ref(platform, work, admin) is None
    assert platform.containers(app) == []


def test_unknown_key_is_refused(platform: Harness, admin: Key) -> None:
    stranger = platform.key("stranger")  # made, never registered
    app = unique("strange")
    work = platform.checkout("hello", app)
    r = platform.push(work, stranger)
    assert r.returncode != 0
    assert "Permission denied (publickey)" in r.stderr
    apps = platform.ssh(admin, "apps:list").stdout
    assert app not in apps


@pytest.mark.parametrize("bad", ["../x", "Hello", "a;b", "", "x/../../etc", "a" * 70])
def test_bad_app_names_get_one_line_and_change_nothing(platform: Harness, admin: Key, bad: str) -> None:
    before = platform.ssh(admin, "apps:list", "--json").stdout
    r = platform.ssh(admin, "git-receive-pack", f"'{bad}.git'")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert "invalid" in r.stderr
    assert platform.ssh(admin, "apps:list", "--json").stdout == before


def test_two_simultaneous_pushes_to_one_app_both_end_correctly(
    platform: Harness, admin: Key, deployed
) -> None:
    app, work, _ = deployed
    other = platform.root / "work" / f"{app}-clone"
    platform.git(platform.root, "clone", "-q", platform.remote(app), str(other), key=admin)
    platform.commit_change(work, "message.txt", "from pusher A\n")
    platform.commit_change(other, "message.txt", "from pusher B\n")
    results: dict[str, object] = {}

    def push(name: str, tree) -> None:
        results[name] = platform.git(
            tree, "push", "origin" if name == "B" else "deis", "master", key=admin, check=False
        )

    threads = [
        threading.Thread(target=push, args=("A", work)),
        threading.Thread(target=push, args=("B", other)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    codes = {n: r.returncode for n, r in results.items()}  # type: ignore[attr-defined]
    assert sorted(codes.values()) == [0, 1], {n: r.stderr for n, r in results.items()}  # type: ignore[attr-defined]
    winner = next(n for n, c in codes.items() if c == 0)
    loser = next(n for n, c in codes.items() if c != 0)
    assert "fetch first" in results[loser].stderr or "non-fast-forward" in results[loser].stderr  # type: ignore[attr-defined]
    winner_tree = work if winner == "A" else other
    assert remote_ref(platform, work, admin) == head(platform, winner_tree)
    assert platform.get(app) == (200, f"from pusher {winner}\n")
    if winner == "B":
        platform.git(work, "reset", "-q", "--hard", "HEAD~1")
        platform.git(work, "pull", "-q", "deis", "master", key=admin)


def test_two_apps_deploy_at_the_same_time(platform: Harness, admin: Key) -> None:
    names = [unique("para"), unique("para")]
    works = [platform.checkout("hello", n) for n in names]
    results = {}

    def push(i: int) -> None:
        results[i] = platform.push(works[i], admin)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i, name in enumerate(names):
        assert results[i].returncode == 0, results[i].stderr
        assert platform.get(name) == (200, "hello from v1\n")


def test_ssh_commands(platform: Harness, admin: Key, deployed) -> None:
    app, _, _ = deployed
    r = platform.ssh(admin, "apps:list")
    assert r.returncode == 0 and app in r.stdout
    r = platform.ssh(admin, "help")
    assert r.returncode == 0 and "apps:list" in r.stdout
    r = platform.ssh(admin, "apps:lsit")
    assert r.returncode == 1
    assert r.stderr.rstrip().splitlines() == [" !     unknown command 'apps:lsit'; did you mean apps:list?"]
