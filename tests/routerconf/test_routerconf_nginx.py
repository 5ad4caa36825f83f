"""The router against a real nginx: start, publish, reload, refuse bad config, remove, stop.

All traffic goes to 127.0.0.1; nginx and the backends are stopped by the fixtures in conftest.py."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable

import pytest

import routerconf.router
from core import proc
from core.errors import RouterError, ServiceError, ValidationError
from core.settings import Settings
from routerconf import Router, render_main

HOST = "myapp.localhost"


def _leftovers(r: Router) -> list[str]:
    """Candidates and test configs that should not outlive a publish."""
    return sorted(p.name for p in r.staging.iterdir()) + sorted(p.name for p in r.dir.glob(".nginx-test.*"))


# -- start / stop ----------------------------------------------------------------------------------
def test_start_lays_out_the_dir_and_is_idempotent(router: Router, settings: Settings) -> None:
    pid = router._pid()
    assert pid is not None and router.running()
    d = settings.nginx_dir
    assert (d / "nginx.conf").read_text() == render_main(settings)
    for sub in ("apps", "logs", "staging", "temp/client_body", "temp/proxy"):
        assert (d / sub).is_dir(), sub
    assert (d / "logs" / "error.log").exists()
    if os.geteuid() == 0:
        assert (d / "temp" / "proxy").stat().st_uid != 0  # handed to the worker user
    router.start()
    assert router._pid() == pid
    assert proc.cmdline(pid).startswith("nginx: master process")


def test_unknown_host_gets_404(router: Router, settings: Settings, http_get: Callable) -> None:
    resp = http_get(settings.http_port, "nobody.localhost")
    assert resp.status == 404
    assert resp.body == "no app here\n"
    assert resp.headers["content-type"].startswith("text/plain")


def test_nginx_outlives_the_router_object(router: Router, settings: Settings) -> None:
    """A restarted appliance (a new Router on the same state dir) finds the running nginx."""
    pid = router._pid()
    again = Router(settings)
    assert again.running()
    again.start()
    assert again._pid() == pid


def test_start_rewrites_an_edited_main_config(router: Router, settings: Settings) -> None:
    pid = router._pid()
    conf = settings.nginx_dir / "nginx.conf"
    conf.write_text(conf.read_text() + "# edited by hand\n")
    router.start()
    assert conf.read_text() == render_main(settings)
    assert router._pid() == pid


def test_stop_leaves_no_process(router: Router, settings: Settings, backend, http_get: Callable) -> None:
    router.publish("myapp", [backend.endpoint])
    assert http_get(settings.http_port, HOST).status == 200
    pid = router._pid()
    assert pid is not None
    workers = proc.children(pid)
    assert workers
    router.stop()
    assert not router.running()
    assert not proc.alive(pid)
    assert not any(proc.alive(w) for w in workers)
    assert not (settings.nginx_dir / "nginx.pid").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", settings.http_port), timeout=1).close()
    conf = str(settings.nginx_dir / "nginx.conf")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            assert conf not in proc.cmdline(int(entry))
    router.stop()  # a second stop is a no-op


def test_stop_ignores_a_pidfile_that_is_not_ours(settings: Settings, tracker) -> None:
    r = tracker.make(settings)
    r.dir.mkdir(parents=True)
    r.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not an nginx master on our config
    assert not r.running()
    r.stop()  # must not signal us


def test_start_fails_cleanly_when_the_port_is_taken(settings: Settings, tracker) -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", settings.http_port))
        s.listen()
        r = tracker.make(settings)
        with pytest.raises(ServiceError, match="Address already in use"):
            r.start()
        assert not r.running()


# -- publish ---------------------------------------------------------------------------------------
def test_publish_routes_to_the_backend(
    router: Router, settings: Settings, backend, http_get: Callable
) -> None:
    router.publish("myapp", [backend.endpoint])
    resp = http_get(settings.http_port, HOST, "/some/path?q=1")
    assert resp.status == 200
    assert resp.body == "hello from backend\n"
    seen = backend.seen[-1]
    assert seen["host"] == HOST
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-port"] == str(settings.http_port)
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])
    assert "connection" not in seen  # empty Connection header: upstream keepalive
    # the Host header may carry the port
    assert http_get(settings.http_port, f"{HOST}:{settings.http_port}").body == "hello from backend\n"
    log = settings.nginx_dir / "logs" / "myapp.access.log"
    deadline = time.monotonic() + 5  # the access log is buffered, flushed each second
    while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.stat().st_size > 0


def test_publish_returns_only_when_all_workers_are_new(router: Router, backend) -> None:
    pid = router._pid()
    assert pid is not None
    for _ in range(3):
        before = proc.children(pid)
        assert before
        router.publish("myapp", [backend.endpoint])
        after = proc.children(pid)
        assert after and not (after & before)


def test_publish_is_fast(router: Router, backend) -> None:
    router.publish("myapp", [backend.endpoint])
    times = []
    for _ in range(5):
        t = time.monotonic()
        router.publish("myapp", [backend.endpoint])
        times.append(time.monotonic() - t)
    # nginx's master waits 100 ms before it retires old workers, so about 0.13 s here; be lenient on CI
    assert min(times) < 1.0, times


def test_switching_endpoints(router: Router, settings: Settings, backend_factory, http_get: Callable) -> None:
    v1 = backend_factory("v1\n")
    v2 = backend_factory("v2\n")
    router.publish("myapp", [v1.endpoint])
    assert http_get(settings.http_port, HOST).body == "v1\n"
    router.publish("myapp", [v2.endpoint])
    # the reload has taken effect when publish returns: no request may still reach v1
    assert {http_get(settings.http_port, HOST).body for _ in range(10)} == {"v2\n"}


def test_reload_lets_in_flight_requests_finish(
    router: Router, settings: Settings, backend, http_get: Callable
) -> None:
    """An old worker still serving a slow request does not block publish beyond DRAIN_WAIT, and the
    request completes (graceful reload)."""
    router.publish("myapp", [backend.endpoint])
    results: list = []
    slow = threading.Thread(target=lambda: results.append(http_get(settings.http_port, HOST, "/sleep/4")))
    slow.start()
    deadline = time.monotonic() + 5
    while not backend.seen and time.monotonic() < deadline:  # until the backend holds the slow request
        time.sleep(0.01)
    assert backend.seen
    t = time.monotonic()
    router.publish("myapp", [backend.endpoint])
    took = time.monotonic() - t
    assert routerconf.router.DRAIN_WAIT <= took < routerconf.router.DRAIN_WAIT + 1.5, took
    assert http_get(settings.http_port, HOST).status == 200
    slow.join(10)
    assert results and results[0].status == 200 and results[0].body == "hello from backend\n"


def test_no_endpoints_gives_503(router: Router, settings: Settings, http_get: Callable) -> None:
    router.publish("myapp", [])
    resp = http_get(settings.http_port, HOST)
    assert resp.status == 503
    assert resp.body == "myapp has no running web process\n"
    assert resp.headers["content-type"].startswith("text/plain")


def test_dead_endpoint_is_skipped(
    router: Router, settings: Settings, backend_factory, port_factory, http_get: Callable
) -> None:
    a = backend_factory("a\n")
    b = backend_factory("b\n")
    dead = f"127.0.0.1:{port_factory()}"
    router.publish("myapp", [dead, a.endpoint, b.endpoint])
    bodies = [http_get(settings.http_port, HOST) for _ in range(12)]
    assert all(r.status == 200 for r in bodies)
    assert {r.body for r in bodies} == {"a\n", "b\n"}


def test_apps_are_separate(router: Router, settings: Settings, backend_factory, http_get: Callable) -> None:
    one = backend_factory("one\n")
    two = backend_factory("two\n")
    router.publish("one", [one.endpoint])
    router.publish("two", [two.endpoint])
    assert http_get(settings.http_port, "one.localhost").body == "one\n"
    assert http_get(settings.http_port, "two.localhost").body == "two\n"


def test_concurrent_publishes_all_land(
    router: Router, settings: Settings, backend_factory, http_get: Callable
) -> None:
    backends = {f"app{i}": backend_factory(f"app{i}\n") for i in range(5)}
    errors: list[BaseException] = []

    def go(app: str) -> None:
        try:
            Router(settings).publish(app, [backends[app].endpoint])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(app,)) for app in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for app in backends:
        assert http_get(settings.http_port, f"{app}.localhost").body == f"{app}\n"


def test_publish_before_start(settings: Settings, tracker, backend, http_get: Callable) -> None:
    r = tracker.make(settings)
    r.publish("myapp", [backend.endpoint])
    assert not r.running()
    assert (settings.nginx_dir / "apps" / "myapp.conf").exists()
    with pytest.raises(RouterError), pytest.MonkeyPatch.context() as mp:
        mp.setattr(routerconf.router, "render_app", lambda *a, **k: "server { bogus_directive; }\n")
        r.publish("other", [])
    assert not (settings.nginx_dir / "apps" / "other.conf").exists()
    r.start()
    tracker.note(r)
    assert http_get(settings.http_port, HOST).body == "hello from backend\n"


# -- refusals --------------------------------------------------------------------------------------
def test_bad_candidate_is_refused_and_the_old_config_keeps_serving(
    router: Router, settings: Settings, backend, http_get: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    router.publish("myapp", [backend.endpoint])
    live = settings.nginx_dir / "apps" / "myapp.conf"
    good = live.read_text()
    pid = router._pid()
    assert pid is not None
    workers = proc.children(pid)

    monkeypatch.setattr(
        routerconf.router, "render_app", lambda *a, **k: "server {\n    bogus_directive on;\n}\n"
    )
    with pytest.raises(RouterError) as info:
        router.publish("myapp", ["127.0.0.1:1"])
    message = str(info.value)
    assert "\n" not in message
    assert 'unknown directive "bogus_directive"' in message
    assert "apps/myapp.conf" in message and "staging" not in message

    assert live.read_text() == good
    assert _leftovers(router) == []
    assert proc.children(pid) == workers  # no reload happened
    assert http_get(settings.http_port, HOST).body == "hello from backend\n"


def test_candidate_is_checked_against_the_other_apps(
    router: Router, settings: Settings, backend, http_get: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block that is valid alone but clashes with another app's live block never goes live."""
    router.publish("one", [backend.endpoint])
    clash = "upstream app_one {\n    server 127.0.0.1:9;\n}\n"
    monkeypatch.setattr(routerconf.router, "render_app", lambda *a, **k: clash)
    with pytest.raises(RouterError, match="duplicate upstream"):
        router.publish("two", [backend.endpoint])
    assert not (settings.nginx_dir / "apps" / "two.conf").exists()
    assert _leftovers(router) == []
    assert http_get(settings.http_port, "one.localhost").body == "hello from backend\n"


def test_injection_is_refused_before_anything_is_written(router: Router, settings: Settings) -> None:
    with pytest.raises(RouterError):
        router.publish("myapp", ["127.0.0.1:80; include /etc/passwd"])
    with pytest.raises(ValidationError):
        router.publish("my;app", ["127.0.0.1:80"])
    assert list((settings.nginx_dir / "apps").iterdir()) == []
    assert _leftovers(router) == []


# -- remove / reload -------------------------------------------------------------------------------
def test_remove(router: Router, settings: Settings, backend, http_get: Callable) -> None:
    router.publish("myapp", [backend.endpoint])
    assert http_get(settings.http_port, HOST).status == 200
    router.remove("myapp")
    assert not (settings.nginx_dir / "apps" / "myapp.conf").exists()
    resp = http_get(settings.http_port, HOST)
    assert resp.status == 404 and resp.body == "no app here\n"
    router.remove("myapp")  # already gone: fine
    with pytest.raises(ValidationError):
        router.remove("../nginx")


def test_reload_brings_new_workers(router: Router) -> None:
    pid = router._pid()
    assert pid is not None
    before = proc.children(pid)
    router.reload()
    after = proc.children(pid)
    assert after and not (after & before)


def settled_workers(pid: int, timeout: float = 10) -> set[int]:
    """nginx's workers once all `worker_processes auto` (one per core) have been forked and no old
    one is still shutting down: a busy machine forks the second worker a moment after the first."""
    deadline = time.monotonic() + timeout
    while True:
        kids = proc.children(pid)
        if len(kids) == len(os.sched_getaffinity(0)) or time.monotonic() > deadline:
            return kids
        time.sleep(0.05)


def test_reload_refuses_a_broken_live_config(router: Router, settings: Settings) -> None:
    pid = router._pid()
    assert pid is not None
    before = settled_workers(pid)
    (settings.nginx_dir / "apps" / "hand.conf").write_text("server { nonsense; }\n")
    with pytest.raises(RouterError, match="nonsense"):
        router.reload()
    assert proc.children(pid) == before
    (settings.nginx_dir / "apps" / "hand.conf").unlink()


def test_reload_and_remove_without_nginx_do_nothing(settings: Settings, tracker) -> None:
    r = tracker.make(settings)
    r.reload()
    r.remove("myapp")
    assert not r.running()


def test_a_reload_nginx_rejects_is_reported(
    router: Router, settings: Settings, port_factory, http_get: Callable
) -> None:
    """`nginx -t` cannot see everything (a port taken by someone else): the master refuses the reload,
    keeps its old workers, and we say why instead of waiting for new workers that never come."""
    old_port = settings.http_port
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", port_factory()))
        blocker.listen()
        settings.http_port = blocker.getsockname()[1]
        expected = r"^nginx did not load the new configuration: \[emerg\] bind\(\)"
        with pytest.raises(RouterError, match=expected):
            router.start()
    assert router.running()
    assert http_get(old_port, "nobody.localhost").status == 404


def test_first_error_line() -> None:
    first = routerconf.router._first_error
    assert first("2026/11/26 03:19:44 [emerg] 1216#1216: bind() to 0.0.0.0:80 failed (98: in use)\n") == (
        "[emerg] bind() to 0.0.0.0:80 failed (98: in use)"
    )
    out = 'nginx: [emerg] unknown directive "x" in apps/a.conf:2\nnginx: configuration file t test failed\n'
    assert first(out) == '[emerg] unknown directive "x" in apps/a.conf:2'
    assert first("odd\nlast\n") == "last"
    assert first("") == ""
