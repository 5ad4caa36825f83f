"""The appliance's SSH server: key auth against etcd, one process handler per session.

`git-receive-pack`/`git-upload-pack` are bridged to real git on the app's bare repo; anything else
is a platform command (gitserver.commands). Identity comes from the key only, never from
anything the client sends (user name, environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

import asyncssh

from appliance.platform import Platform
from core.errors import DeisError, NotFound, StoreUnavailable, UsageError
from gitserver import channels, cli, commands, repos
from gitserver.gate import Gate
from hooks import service as hook_service
from releaser import apps
from releaser.store import Store
from scheduler.base import Stdio

MAX_AUTH_FAILURES = 6
MAX_STDIN = 1 << 20  # what a command may read from stdin (keys, .env files)
GIT_VERBS = {"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}
MAX_THREADS = 128
# Sessions a stopping appliance does not wait for: they follow or attach until the user leaves.
OPEN_ENDED = frozenset({"logs", "run"})
UPGRADE_WAIT = 300.0  # how long a new session waits for `deis up` to finish replacing components
STALE_MARKER = 1800.0  # an upgrade marker older than this was left by an interrupted `deis up`
STOPPING = "the platform is being upgraded or restarted; try again shortly"
AUTH_THREADS = 8  # key lookups run here, never behind commands in the sessions' pool


def ensure_host_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    old = os.umask(0o077)  # born 0600: never readable by others, not even for a moment
    try:
        key.write_private_key(str(tmp))
    finally:
        os.umask(old)
    os.replace(tmp, path)
    return key


class _Auth(asyncssh.SSHServer):
    def __init__(self, store: Store, gate: Gate, pool: ThreadPoolExecutor) -> None:
        self.store = store
        self.gate = gate
        self.pool = pool
        self.failures = 0
        self.conn: asyncssh.SSHServerConnection | None = None
        self.counted = False  # among the gate's not-yet-authenticated connections
        self.address = ""  # the client's, as the gate counts it

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        self.counted = self.gate.admit_connection(self.address, self)
        if not self.counted:
            conn.close()  # too many connections are still authenticating

    def evict(self) -> None:
        """The gate gives this one's slot to a newcomer from another address."""
        self.counted = False
        if self.conn is not None:
            self.conn.close()

    def auth_completed(self) -> None:
        self._uncount()

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.gate.authenticated(self.address, self)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        assert self.conn is not None
        loop = asyncio.get_running_loop()
        fingerprint = key.get_fingerprint("sha256")
        try:
            user = await loop.run_in_executor(self.pool, apps.user_for_key, self.store, fingerprint)
        except StoreUnavailable as exc:
            # The key cannot be checked. Letting the session open is the only way to tell the user why
            # (a refused login reads "Connection closed"); `handle` then runs nothing, prints and exits 1.
            self.conn.set_extra_info(deis_unavailable=exc.message)
            return True
        if user is None:
            self.failures += 1
            if self.failures >= MAX_AUTH_FAILURES:
                self.conn.close()
            return False
        self.conn.set_extra_info(deis_user=user)
        return True


class _ChannelText(io.TextIOBase):
    """A text stream a worker thread writes to; each write is handed to the event loop, and the
    writer waits until the channel has room again (back-pressure: a client that stops reading
    stops the command's output, not the appliance's memory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: asyncssh.SSHWriter[bytes]) -> None:
        self.loop = loop
        self._stream = stream
        self._loop_thread = threading.get_ident()  # made on the loop's thread

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "replace")
        if threading.get_ident() == self._loop_thread:
            self._safe_write(data)  # the server's own last words: never wait on the loop's thread
        else:
            with contextlib.suppress(Exception):  # the client may be gone; the command still finishes
                asyncio.run_coroutine_threadsafe(self._write_drained(data), self.loop).result()
        return len(s)

    def _safe_write(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            self._stream.write(data)

    async def _write_drained(self, data: bytes) -> None:
        self._stream.write(data)
        await self._stream.drain()


class Appliance:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.store = platform.store
        self.gate = Gate(
            self.settings.max_preauth_connections,
            self.settings.max_sessions_per_user,
            self.settings.max_preauth_per_address,
        )
        self.auth_pool = ThreadPoolExecutor(max_workers=AUTH_THREADS, thread_name_prefix="ssh-auth")
        self.sessions: dict[asyncio.Task[Any], str] = {}  # the running ones, by their first word
        self.stopping = False

    @property
    def deploy_socket(self) -> Path:
        return self.settings.run_dir / "deploy.sock"

    async def start(
        self, host: str | None = None, port: int | None = None, reuse_port: bool = False
    ) -> asyncssh.SSHAcceptor:
        key = ensure_host_key(self.settings.host_key)
        # Handlers run in the loop's default executor; `logs -f` and `run` hold a thread for the whole
        # session, so the default (CPUs + 4 threads) would let a few followers stall every session.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=MAX_THREADS))
        self._hooks = await hook_service.serve(self.deploy_socket, self.platform)
        return await asyncssh.create_server(
            lambda: _Auth(self.store, self.gate, self.auth_pool),
            host if host is not None else self.settings.ssh_host,
            self.settings.ssh_port if port is None else port,
            server_host_keys=[key],
            process_factory=self.handle,
            encoding=None,
            line_editor=False,
            login_timeout=30,
            keepalive_interval=30,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            # A replacement appliance listens beside the one it replaces (appliance.handover).
            reuse_port=reuse_port or None,
        )

    async def drain(self) -> None:
        """Once the listener is closed: until every session but the open-ended ones has ended."""
        while any(kind not in OPEN_ENDED for kind in self.sessions.values()):
            await asyncio.sleep(0.1)

    async def _wait_for_upgrade(self, stderr: IO[str]) -> None:
        """A new session waits while `deis up` replaces the components (its marker file)."""
        marker = self.settings.upgrade_marker
        deadline = asyncio.get_running_loop().time() + UPGRADE_WAIT
        told = False
        while True:
            try:
                if time.time() - marker.stat().st_mtime > STALE_MARKER:
                    return
            except OSError:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise DeisError(STOPPING)
            if not told:
                stderr.write("-----> the platform is being upgraded, waiting\n")
                told = True
            await asyncio.sleep(0.2)

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        loop = asyncio.get_running_loop()
        stdout = cast(IO[str], _ChannelText(loop, process.stdout))
        stderr = cast(IO[str], _ChannelText(loop, process.stderr))
        code = 1
        counted: str | None = None
        task = asyncio.current_task()
        if task is not None:
            self.sessions[task] = (process.command or "").split(" ", 1)[0]
        try:
            if self.stopping:
                raise DeisError(STOPPING)
            await self._wait_for_upgrade(stderr)
            unavailable = process.get_extra_info("deis_unavailable")
            if unavailable:
                raise StoreUnavailable(unavailable)
            user = await loop.run_in_executor(self.auth_pool, self._user, process.get_extra_info("deis_user"))
            if not self.gate.open_session(user.name):
                raise DeisError(
                    f"too many sessions: {user.name} has {self.gate.max_sessions} open, the most one user"
                    " may have (the operator's DEIS_MAX_SESSIONS_PER_USER); close one and try again"
                )
            counted = user.name
            line = process.command
            if line is None:
                raise UsageError(f"hi {user.name}! there is no shell here; try: ssh deis help")
            argv = cli.split(line)
            if argv and argv[0] in GIT_VERBS:
                code = await self.git(process, user, GIT_VERBS[argv[0]], argv[1:], stderr)
            else:
                code = await self.command(process, user, argv, stdout)
        except DeisError as exc:
            stderr.write(f" !     {exc}\n")
            code = exc.exit_code
        except Exception as exc:
            stderr.write(f" !     internal error: {type(exc).__name__}: {exc}\n")
            code = 1
        finally:
            if counted is not None:
                self.gate.close_session(counted)
            if task is not None:
                self.sessions.pop(task, None)
        await asyncio.sleep(0)  # let queued writes reach the channel before exit
        with contextlib.suppress(Exception):
            await process.stdout.drain()
            await process.stderr.drain()
        with contextlib.suppress(Exception):  # the channel may be closed already
            process.exit(code)

    def _user(self, name: str | None) -> apps.User:
        user = apps.get_user(self.store, name) if name else None
        if user is None:
            raise DeisError("your key is no longer registered")
        return user

    def _context(
        self, process: asyncssh.SSHServerProcess[bytes], user: apps.User, stream: IO[str], **kw: Any
    ) -> commands.Context:
        # The one thing taken from the client's environment: a preference, never identity.
        no_wait = str(process.env.get("DEIS_NO_WAIT", "")).lower() in ("1", "true", "yes")
        return commands.Context(self.platform, user, stream, no_wait=no_wait, **kw)

    async def command(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        user: apps.User,
        argv: list[str],
        stdout: IO[str],
    ) -> int:
        argv, as_json = cli.extract_json_flag(argv)
        cmd, args = cli.Registry.parse(commands.registry, argv)
        stdin = b""
        if cmd.stdin:
            stdin = await self._read_all(process)
        loop = asyncio.get_running_loop()
        closed = threading.Event()

        interrupt: asyncio.Task[None] | None = None

        async def attached(fn: Callable[[Stdio], int]) -> int:
            if interrupt is not None:  # the one-off gets stdin (and its ^C) from here on
                interrupt.cancel()
                await asyncio.gather(interrupt, return_exceptions=True)
            return await channels.attach(process, fn)

        def attach(fn: Callable[[Stdio], int]) -> int:
            # Called from the handler's worker thread: the channel is pumped on the event loop.
            return asyncio.run_coroutine_threadsafe(attached(fn), loop).result()

        ctx = self._context(
            process,
            user,
            stdout,
            stdin=stdin,
            tty=process.get_terminal_type() is not None,
            json=as_json,
            closed=closed,
            attach=attach,
        )
        watcher = asyncio.create_task(self._watch_closed(process, closed))
        if ctx.tty and not cmd.stdin:
            interrupt = asyncio.create_task(self._watch_interrupt(process, closed))
        try:
            result = await asyncio.to_thread(cmd.func, ctx, args)
        finally:
            watcher.cancel()
            if interrupt is not None:
                interrupt.cancel()
        return int(result or 0)

    @staticmethod
    async def _watch_interrupt(process: asyncssh.SSHServerProcess[bytes], closed: threading.Event) -> None:
        """On a pty the client's ^C (or ^D) arrives as a byte, not as a hang-up: it ends `logs -f` too."""
        while True:
            try:
                data = await process.stdin.read(1024)
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            except (asyncssh.Error, OSError):
                return
            if not data:
                return  # EOF (ssh -tt < /dev/null) is not a request to stop
            if b"\x03" in data or b"\x04" in data:
                closed.set()
                return

    @staticmethod
    async def _watch_closed(process: asyncssh.SSHServerProcess[bytes], closed: threading.Event) -> None:
        await process.channel.wait_closed()
        closed.set()

    @staticmethod
    async def _read_all(process: asyncssh.SSHServerProcess[bytes]) -> bytes:
        chunks, size = [], 0
        while data := await process.stdin.read(65536):
            chunks.append(data)
            size += len(data)
            if size > MAX_STDIN:
                raise UsageError(f"input too large (over {MAX_STDIN} bytes)")
        return b"".join(chunks)

    # -- git ------------------------------------------------------------------------------------
    async def git(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        user: apps.User,
        verb: str,
        args: list[str],
        stderr: IO[str],
    ) -> int:
        if len(args) != 1:
            raise UsageError(f"git-{verb} takes one repository path")
        from core.names import app_from_repo_path

        app_name = app_from_repo_path(args[0])
        ctx = self._context(process, user, stderr)
        if verb == "receive-pack":
            app = await asyncio.to_thread(commands.authorize_push, ctx, app_name)
        else:
            app = await asyncio.to_thread(commands.authorize_fetch, ctx, app_name)
        env = self._git_env(app.name, user.name)
        if verb == "upload-pack":
            repo = repos.repo_path(self.settings, app.name)
            if not (repo / "HEAD").exists():  # only an app being destroyed lacks one: never recreate it
                raise NotFound(f"app {app.name} does not exist or is not yours")
            return await channels.bridge(process, ["git", "upload-pack", str(repo)], env)
        # The lock covers the whole receive-pack, ref update included: a second push waits here,
        # before git advertises refs, so it sees the first push's result (no lost update). The repo
        # is (re)made under it, so a push that waited for apps:destroy cannot bring it back.
        lock = await asyncio.to_thread(ctx.lock, app.name)
        try:
            repo = await asyncio.to_thread(repos.ensure_repo, self.settings, app.name)
            # git refuses a pack over the limit as it arrives; the hook checks the unpacked size.
            limit = f"receive.maxInputSize={self.settings.max_push_bytes}"
            code = await channels.bridge(process, ["git", "-c", limit, "receive-pack", str(repo)], env)
            if code == 0:
                await asyncio.to_thread(repos.fix_head, repo)
            return code
        finally:
            await hook_service.finished(app.name)  # a deploy unwinding after a hang-up still holds the app
            await asyncio.to_thread(lock.release)

    def _git_env(self, app: str, user: str) -> dict[str, str]:
        keep = (
            "PATH",
            "LANG",
            "LC_ALL",
            "DOCKER_HOST",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY",
            "TMPDIR",
            "PYTHONPATH",
        )
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(self.settings.env())
        env["DEIS_DEPLOY_SOCKET"] = str(self.deploy_socket)
        env.update(
            {
                "DEIS_APP": app,
                "DEIS_USER": user,
                "PYTHONUNBUFFERED": "1",
                "HOME": str(self.settings.state_dir),
            }
        )
        return env


async def serve(
    platform: Platform,
    on_listening: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM (or SIGINT): then stop listening, let the sessions in flight end (a push
    completes), and return. `on_listening` runs once the port is open, `on_stop` at the signal."""
    appliance = Appliance(platform)
    server = await appliance.start(reuse_port=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if on_listening is not None:
        on_listening()
    try:
        await stopping.wait()
        appliance.stopping = True
        if on_stop is not None:
            on_stop()
    finally:
        server.close()
    await appliance.drain()
