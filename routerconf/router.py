"""The router: one nginx daemon under `settings.nginx_dir`, driven through files and signals.

Layout of `settings.nginx_dir` (nginx runs with `-p` set to it, so every path in the config is relative):

    nginx.conf          the main config (render_main); includes apps/*.conf
    apps/APP.conf       one app's upstream and servers (render_app); replaced atomically
    certs/              0700; _platform.crt/.key (self-signed, made at start for DOMAIN and *.DOMAIN)
                        and APP.HASH.crt/.key (certs:add), 0600, named by content so a live config
                        never points at a file being rewritten; an app's old ones go once unused
    staging/            candidates being checked; never included by the live config
    logs/               error.log, access.log, APP.access.log
    temp/               nginx's temp dirs (client_body, proxy, ...), owned by the worker user
    nginx.pid           the master's pid: the only process `stop()` and `reload()` signal
    .lock               flock'd around every change, so publishes from several processes take turns

A candidate goes live only after `nginx -t` passed on it: with nginx running, on a test main config
that includes just the candidate (cheap with 1,000 apps: about 0.04 s against 0.2-0.5 s for the
whole config), then the reload checks the whole: nginx's master parses the new configuration
completely before it changes anything and keeps the old one serving if it fails, and then the
candidate is taken back and nginx reloaded again. Without a running nginx, the candidate is checked
among every other app's live file. Either way one app's bad block (or certificate) can neither go
live nor break a later reload: that app keeps its last good block, the caller gets nginx's message,
and every other app's publish goes on as before.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from core import proc
from core.errors import RouterError, ServiceError
from core.names import check_app
from core.settings import Settings
from routerconf import tls
from routerconf.commands import NGINX_BIN, nginx_argv, nginx_test_argv
from routerconf.render import CERT_DIGEST, PLATFORM_CERT, cert_files, default_user, render_app, render_main
from routerconf.site import Cert, Site

TEMP_DIRS: Final = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

START_TIMEOUT: Final = 10.0  # nginx up, its pidfile written, a worker running, the port answering
TEST_TIMEOUT: Final = 30.0  # one `nginx -t`
RELOAD_TIMEOUT: Final = 10.0  # after SIGHUP, until new workers run
DRAIN_WAIT: Final = 2.0  # after new workers run, how long old ones may take before we stop waiting
STOP_TIMEOUT: Final = 10.0  # SIGQUIT (graceful), then SIGTERM
POLL: Final = 0.005

_SEVERE = ("[emerg]", "[alert]", "[crit]", "[error]")
_LOG_PREFIX = re.compile(r"^\s*(?:\d+#\d+:\s*)?(?:\*\d+\s+)?")


def _first_error(text: str) -> str:
    """The line of nginx's output that says what is wrong, without the `nginx: ` and timestamp prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        for tag in _SEVERE:
            if tag in line:
                # "2024/01/01 00:00:00 [emerg] 123#123: *4 message" -> "[emerg] message"
                return tag + " " + _LOG_PREFIX.sub("", line.split(tag, 1)[1])
    return lines[-1].removeprefix("nginx: ") if lines else ""


class Router:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nginx_bin = NGINX_BIN
        self.dir = settings.nginx_dir.absolute()
        self.conf = self.dir / "nginx.conf"
        self.apps_dir = self.dir / "apps"
        self.staging = self.dir / "staging"
        self.logs = self.dir / "logs"
        self.temp = self.dir / "temp"
        self.certs = self.dir / "certs"
        self.pidfile = self.dir / "nginx.pid"
        self.user = default_user()

    # -- public ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Write nginx.conf and start nginx unless our nginx already runs (then reload if the config
        changed). Returns once nginx listens on `settings.http_port`."""
        with self._locked():
            if not self._prepare_locked():
                self._spawn()

    def prepare(self) -> bool:
        """Write nginx.conf, the layout and the platform certificate for an nginx someone else starts
        (the router's container); reload a running one if they changed. True if one runs."""
        with self._locked():
            return self._prepare_locked()

    def _prepare_locked(self) -> bool:
        text = render_main(self.settings, user=self.user)
        self._layout()
        renewed = self._ensure_platform_cert()
        changed = not self.conf.exists() or self.conf.read_text() != text
        if changed:
            self._install(text, self.conf, label="nginx.conf")
        pid = self._pid()
        if pid is not None and (changed or renewed):
            self._reload(pid)
        return pid is not None

    def master_pid(self) -> int | None:
        """The running nginx master of this router (from its pidfile), or None."""
        return self._pid()

    def adopt(self, pid: int) -> None:
        """After a replaced nginx quit (and removed the pidfile both share): `pid` is the master, and
        it reloads what was rendered meanwhile."""
        with self._locked():
            tmp = self.pidfile.with_suffix(".tmp")
            tmp.write_text(f"{pid}\n")
            os.replace(tmp, self.pidfile)
            if self._pid() == pid:
                self._reload(pid)

    def stop(self) -> None:
        """Quit our nginx gracefully (SIGQUIT: finish open requests), SIGTERM after STOP_TIMEOUT."""
        with self._locked():
            pid = self._pid()
            if pid is None:
                return
            workers = proc.children(pid)
            for sig, wait in ((signal.SIGQUIT, STOP_TIMEOUT), (signal.SIGTERM, 5.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except PermissionError as exc:
                    raise ServiceError(
                        f"not allowed to stop nginx (pid {pid}): run as the user that started it"
                    ) from exc
                if self._wait_gone({pid, *workers}, wait):
                    return
            raise ServiceError(f"nginx (pid {pid}) did not exit; see {self.logs / 'error.log'}")

    def running(self) -> bool:
        return self._pid() is not None

    def publish(self, app: str, endpoints: list[str], site: Site | None = None) -> None:
        """Route APP.DOMAIN and the site's domains to `endpoints` (a 503 page if empty), with the
        site's certificate and settings. Raises RouterError, leaving the live config as it was, if
        nginx refuses the result. Returns once nginx serves the new config."""
        text = render_app(
            app,
            self.settings.domain,
            endpoints,
            self.settings.http_port,
            https_port=self.settings.https_port,
            site=site,
        )
        with self._locked():
            self._layout()
            live = self._app_file(app)
            previous = live.read_text() if live.exists() else None
            written = self._write_cert(app, site.cert) if site is not None and site.cert else []
            pid = self._pid()
            try:
                # With nginx running, the candidate is checked alone (cheap with many apps) and the
                # reload checks the whole: nginx's master parses the new config completely before
                # it changes anything and keeps serving the old one if it fails, so a block that
                # clashes with another app's is caught there and taken back below. Without a
                # running nginx there is no reload to rely on: check against every app.
                self._install(text, live, label=app, alone=pid is not None)
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            if pid is not None:
                try:
                    self._reload(pid)
                except RouterError as exc:
                    self._restore(live, previous)
                    for path in written:
                        path.unlink(missing_ok=True)
                    self._reload(pid)
                    reason = exc.message.removeprefix("nginx did not load the new configuration: ")
                    raise RouterError(f"nginx refused the configuration for {app}: {reason}") from exc
            self._prune_certs(app, text)

    def _restore(self, live: Path, previous: str | None) -> None:
        if previous is None:
            live.unlink(missing_ok=True)
            return
        fd, name = tempfile.mkstemp(prefix=f"{live.stem}.", suffix=".conf", dir=self.staging)
        with os.fdopen(fd, "w") as f:
            f.write(previous)
        Path(name).chmod(0o644)
        os.replace(name, live)

    def remove(self, app: str) -> None:
        """Stop routing APP (its host then gets the 404 page). A missing app is not an error."""
        check_app(app)
        with self._locked():
            live = self._app_file(app)
            if not live.exists():
                return
            live.unlink()
            self._prune_certs(app, "")
            pid = self._pid()
            if pid is not None:
                self._reload(pid)
            # nginx has reloaded without the app: nothing writes its access log any more.
            (self.logs / f"{app}.access.log").unlink(missing_ok=True)

    def reopen_logs(self) -> bool:
        """Make nginx reopen its log files (after one was renamed away); False if it is not running."""
        with self._locked():
            pid = self._pid()
            if pid is None:
                return False
            os.kill(pid, signal.SIGUSR1)
            return True

    def reload(self) -> None:
        """Check the live config and make nginx load it; nothing to do if nginx is not running."""
        with self._locked():
            pid = self._pid()
            if pid is None:
                return
            self._test(self.conf, label="nginx.conf")
            self._reload(pid)

    # -- files -----------------------------------------------------------------------------------
    def _app_file(self, app: str) -> Path:
        return self.apps_dir / f"{check_app(app)}.conf"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _layout(self) -> None:
        for d in (self.apps_dir, self.staging, self.logs, self.temp):
            d.mkdir(parents=True, exist_ok=True)
        self.certs.mkdir(mode=0o700, exist_ok=True)
        if not (self.dir / PLATFORM_CERT[0]).exists():
            self._ensure_platform_cert()
        for name in TEMP_DIRS:
            d = self.temp / name
            d.mkdir(exist_ok=True)
            if self.user is not None:
                pw = pwd.getpwnam(self.user)
                st = d.stat()
                if (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid):
                    os.chown(d, pw.pw_uid, pw.pw_gid)
                d.chmod(0o700)

    def _write_private(self, path: Path, text: str) -> None:
        """Write `text` to `path` with mode 0600 from the start, atomically."""
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600
                f.write(text)
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def _ensure_platform_cert(self) -> bool:
        """The self-signed certificate of the default https server; made again if missing or if it
        does not cover the platform domain (the domain changed). True if it was (re)made."""
        crt, key = (self.dir / p for p in PLATFORM_CERT)
        domain = self.settings.domain.lower()
        if crt.exists() and key.exists():
            try:
                names = tls.names_of(crt.read_text())
            except ValueError:
                names = ()
            if domain in names and f"*.{domain}" in names:
                return False
        cert = tls.self_signed(domain)
        self._write_private(key, cert.key)
        self._write_private(crt, cert.chain)
        return True

    def _write_cert(self, app: str, cert: Cert) -> list[Path]:
        """Write APP's certificate files unless they exist; returns the ones written here."""
        written = []
        for rel, text in zip(cert_files(app, cert), (cert.chain, cert.key), strict=True):
            path = self.dir / rel
            if not path.exists():
                self._write_private(path, text)
                written.append(path)
        return written

    def _prune_certs(self, app: str, live_text: str) -> None:
        """Remove APP's certificate files that its live config no longer names."""
        mine = re.compile(rf"{re.escape(check_app(app))}\.[0-9a-f]{{{CERT_DIGEST}}}\.(?:crt|key)")
        for path in self.certs.iterdir():
            if mine.fullmatch(path.name) and f"certs/{path.name};" not in live_text:
                path.unlink(missing_ok=True)

    def _live_includes(self, replacing: Path) -> list[str]:
        """What `include apps/*.conf` would include, minus `replacing`, as paths relative to self.dir."""
        return [
            f"apps/{p.name}"
            for p in sorted(self.apps_dir.glob("*.conf"))
            if p != replacing and not p.name.startswith(".")
        ]

    def _install(self, text: str, live: Path, *, label: str, alone: bool = False) -> None:
        """Stage `text`, check it with `nginx -t`, then move it over `live`.

        The main config is checked as it is. An app's block is checked in place of `live` among all
        the other live blocks, or, with `alone`, by itself: what the cross-app check would add is
        then left to the reload (see `publish`)."""
        is_main = live == self.conf
        fd, name = tempfile.mkstemp(prefix=f"{live.stem}.", suffix=".conf", dir=self.staging)
        candidate = Path(name)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            candidate.chmod(0o644)
            if is_main:
                self._test_main(text, label=label, shown={})
            else:
                others = [] if alone else self._live_includes(live)
                main = render_main(
                    self.settings, user=self.user, includes=[*others, f"staging/{candidate.name}"]
                )
                self._test_main(main, label=label, shown={str(candidate): f"apps/{live.name}"})
            os.replace(candidate, live)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise

    def _test_main(self, main: str, *, label: str, shown: dict[str, str]) -> None:
        # The test main config must sit in self.dir: nginx resolves `include` against the directory of
        # the config file, and everything else against the -p prefix; both are self.dir here.
        fd, name = tempfile.mkstemp(prefix=".nginx-test.", suffix=".conf", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(main)
            self._test(Path(name), label=label, shown=shown)
        finally:
            Path(name).unlink(missing_ok=True)

    # -- nginx -----------------------------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run nginx in the foreground part of its life; its stderr goes through a file, not a pipe,
        so a daemonized child holding the descriptor can never keep us waiting."""
        with tempfile.TemporaryFile(mode="w+") as err:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=timeout,
                    cwd="/",
                    start_new_session=True,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise ServiceError(f"nginx not found at {argv[0]}: install nginx (nginx-light)") from exc
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(f"nginx did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
            except OSError as exc:
                raise ServiceError(f"could not run nginx: {exc}") from exc
            err.seek(0)
            return done.returncode, err.read()

    def _test(self, conf: Path, *, label: str, shown: dict[str, str] | None = None) -> None:
        rc, err = self._run(nginx_test_argv(conf, self.dir, binary=self.nginx_bin), TEST_TIMEOUT)
        if rc == 0:
            return
        message = _first_error(err) or f"nginx -t exited with {rc}"
        for path, name in (shown or {}).items():
            message = message.replace(path, name)
        message = message.replace(f"{self.dir}/", "")
        raise RouterError(f"nginx refused the configuration for {label}: {message}")

    def _pid(self) -> int | None:
        """The pid of the nginx master we started, from our pidfile; None if it is not running.
        A recycled pid is not ours: the process must be an nginx master running our config."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if pid <= 1 or not proc.alive(pid):
            return None
        title = proc.cmdline(pid)
        if not title.startswith("nginx: master process") or str(self.conf) not in title:
            return None
        return pid

    def _spawn(self) -> None:
        rc, err = self._run(nginx_argv(self.conf, self.dir, binary=self.nginx_bin), START_TIMEOUT)
        if rc != 0:
            message = _first_error(err) or f"exit code {rc}"
            raise ServiceError(f"nginx did not start: {message}")
        self.wait_up(START_TIMEOUT)

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until a master with a worker runs and the port answers; ServiceError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self._pid()
            if pid is not None and proc.children(pid) and self._listening():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"nginx did not come up on port {self.settings.http_port} within {timeout:.0f} s;"
                    f" see {self.logs / 'error.log'}"
                )
            time.sleep(POLL)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.settings.http_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _error_log_size(self) -> int:
        try:
            return (self.logs / "error.log").stat().st_size
        except FileNotFoundError:
            return 0

    def _errors_since(self, offset: int) -> str:
        try:
            with open(self.logs / "error.log", "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        for line in text.splitlines():
            if "[emerg]" in line or "[alert]" in line:
                return _first_error(line)
        return ""

    def _reload(self, pid: int) -> None:
        """SIGHUP the master; return once every worker is a new one (started with the new config).

        Old workers stop accepting at once but finish the requests they hold; if after DRAIN_WAIT some
        still serve (long downloads, websockets) and all say they are shutting down, we stop waiting:
        new connections already go to the new workers."""
        old = proc.children(pid)
        offset = self._error_log_size()
        try:
            os.kill(pid, signal.SIGHUP)
        except PermissionError as exc:
            raise ServiceError(
                f"not allowed to signal nginx (pid {pid}): run as the user that started it"
            ) from exc
        start = time.monotonic()
        new_seen: float | None = None
        while True:
            now = time.monotonic()
            kids = proc.children(pid)
            new, stale = kids - old, kids & old
            if new:
                if not stale:
                    return
                new_seen = new_seen or now
                if now - new_seen > DRAIN_WAIT and all(
                    "shutting down" in proc.cmdline(p) or not proc.alive(p) for p in stale
                ):
                    return
            else:
                error = self._errors_since(offset)
                if error:
                    raise RouterError(f"nginx did not load the new configuration: {error}")
                if not proc.alive(pid):
                    raise ServiceError(f"nginx exited while reloading; see {self.logs / 'error.log'}")
            if now - start > RELOAD_TIMEOUT:
                if new:
                    return
                raise RouterError(
                    f"nginx did not load the new configuration within {RELOAD_TIMEOUT:.0f} s;"
                    f" see {self.logs / 'error.log'}"
                )
            time.sleep(POLL)

    def _wait_gone(self, pids: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(proc.alive(p) for p in pids):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True
