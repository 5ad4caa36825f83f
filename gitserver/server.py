"""The appliance's SSH server: key auth against etcd, one process handler per session.

`git-receive-pack`/`git-upload-pack` are bridged to real git on the app's bare repo; anything else
is a platform command (gitserver.commands). Identity comes from the key only, never from
anything the client sends (user name, environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import pty
import signal
import struct
import termios
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

import asyncssh

from appliance.platform import Platform
from core.errors import DeisError, NotFound, UsageError
from core.settings import Settings
from gitserver import cli, commands, repos
from hooks import service as hook_service
from releaser import apps
from releaser.store import Store
from scheduler.base import Stdio

MAX_AUTH_FAILURES = 6
MAX_STDIN = 1 << 20  # what a command may read from stdin (keys, .env files)
GIT_VERBS = {"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}
KILL_GRACE = 10.0
MAX_THREADS = 128


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
    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = 0
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        user = await asyncio.to_thread(apps.user_for_key, self.store, key.get_fingerprint("sha256"))
        if user is None:
            self.failures += 1
            if self.failures >= MAX_AUTH_FAILURES and self.conn is not None:
                self.conn.close()
            return False
        assert self.conn is not None
        self.conn.set_extra_info(deis_user=user)
        return True


class _ChannelText(io.TextIOBase):
    """A text stream a worker thread writes to; each write is handed to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, write: Callable[[bytes], Any]) -> None:
        self.loop = loop
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "replace")
        self.loop.call_soon_threadsafe(self._safe_write, data)
        return len(s)

    def _safe_write(self, data: bytes) -> None:
        with contextlib.suppress(Exception):  # the client may be gone; the command still finishes
            self._write(data)


class Appliance:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.store = platform.store

    @property
    def deploy_socket(self) -> Path:
        return self.settings.run_dir / "deploy.sock"

    async def start(self, host: str | None = None, port: int | None = None) -> asyncssh.SSHAcceptor:
        key = ensure_host_key(self.settings.host_key)
        # Handlers run in the loop's default executor; `logs -f` and `run` hold a thread for the whole
        # session, so the default (CPUs + 4 threads) would let a few followers stall every session.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=MAX_THREADS))
        self._hooks = await hook_service.serve(self.deploy_socket, self.platform)
        return await asyncssh.create_server(
            lambda: _Auth(self.store),
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
        )

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        loop = asyncio.get_running_loop()
        stdout = cast(IO[str], _ChannelText(loop, process.stdout.write))
        stderr = cast(IO[str], _ChannelText(loop, process.stderr.write))
        code = 1
        try:
            user = await asyncio.to_thread(self._user, process.get_extra_info("deis_user"))
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
        except Exception as exc:  # noqa: BLE001 - a bug must still end the session with a message
            stderr.write(f" !     internal error: {type(exc).__name__}: {exc}\n")
            code = 1
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
            return await self.attach(process, fn)

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

    # -- attached one-offs (run) -----------------------------------------------------------------
    async def attach(self, process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
        """Call `fn` (in a worker thread) with descriptors wired to the channel: a pty sized like
        the client's terminal when it asked for one, else three pipes. Returns what `fn` returns,
        once its output has reached the client."""
        if process.get_terminal_type() is None:
            return await self._attach_pipes(process, fn)
        return await self._attach_pty(process, fn)

    async def _attach_pipes(self, process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        os.set_blocking(w_in, False)
        await process.redirect(stdout=r_out, stderr=r_err, send_eof=False)
        stdin = [w_in]  # the pump closes it at the client's EOF (and says so by clearing it)
        pump = asyncio.create_task(self._pump_to_fd(process, stdin))
        try:
            return await asyncio.to_thread(fn, Stdio(stdin=r_in, stdout=w_out, stderr=w_err))
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            for fd in (r_in, w_out, w_err, *stdin):  # w_out, w_err: the end for asyncssh's readers
                os.close(fd)

    async def _attach_pty(self, process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
        """Both directions pumped by hand, so a resize reaches the pty (TIOCSWINSZ; the kernel tells
        the process that owns the terminal), and the output is read to its end (EIO once every
        holder of the other end is gone) before the session exits."""
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        try:
            _set_winsize(slave, process.get_terminal_size())
            reader = asyncio.create_task(self._pump_from_pty(process, master))
            writer = asyncio.create_task(self._pump_to_fd(process, [master], resize=True))
            try:
                rc = await asyncio.to_thread(fn, Stdio(stdin=slave, stdout=slave, stderr=slave, tty=True))
            finally:
                os.close(slave)
                writer.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 5.0)  # the output's tail, up to EIO
        finally:
            os.close(master)
        return rc

    @staticmethod
    async def _pump_from_pty(process: asyncssh.SSHServerProcess[bytes], master: int) -> None:
        while True:
            try:
                await _fd_ready(master, write=False)
                data = os.read(master, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: every holder of the pty's other end is gone
                return
            if not data:
                return
            try:
                process.stdout.write(data)
                await process.stdout.drain()
            except (asyncssh.Error, OSError):
                return

    @staticmethod
    async def _pump_to_fd(process: asyncssh.SSHServerProcess[bytes], target: list[int], resize: bool = False) -> None:
        """The client's input to `target[0]` (non-blocking), with back-pressure. At EOF a pipe is
        closed (and `target` emptied); a pty (`resize`: its size follows the client's terminal) is
        left open: the one-off ends the session."""
        fd = target[0]
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as exc:
                if resize:
                    _set_winsize(fd, (exc.width, exc.height, exc.pixwidth, exc.pixheight))
                continue
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue  # the terminal is raw: ^C arrives as a byte, not as a signal
            except (asyncssh.Error, OSError):
                return
            if not data:
                if not resize:
                    target.clear()
                    os.close(fd)
                return
            view = memoryview(data)
            while view:
                try:
                    await _fd_ready(fd, write=True)
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    continue
                except OSError:
                    return

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
            return await self._bridge(process, ["git", "upload-pack", str(repo)], env)
        # The lock covers the whole receive-pack, ref update included: a second push waits here,
        # before git advertises refs, so it sees the first push's result (no lost update). The repo
        # is (re)made under it, so a push that waited for apps:destroy cannot bring it back.
        lock = await asyncio.to_thread(ctx.lock, app.name)
        try:
            repo = await asyncio.to_thread(repos.ensure_repo, self.settings, app.name)
            code = await self._bridge(process, ["git", "receive-pack", str(repo)], env)
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

    async def _bridge(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        """Run git with the channel attached; stdin pumped by hand (FACTS: redirect loses a large
        push's tail), stdout/stderr passed as raw pipes; the child's group dies with the channel."""
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        try:
            child = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=w_out,
                stderr=w_err,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(w_out)
            os.close(w_err)
        await process.redirect(stdout=r_out, stderr=r_err, send_eof=False)
        pump = asyncio.create_task(self._pump(process, child))
        closed = asyncio.create_task(process.channel.wait_closed())
        waiting = asyncio.create_task(child.wait())
        await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            await self._kill_group(child, waiting)
        closed.cancel()
        pump.cancel()
        rc = await waiting
        return rc if rc >= 0 else 128 - rc

    @staticmethod
    async def _pump(process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process) -> None:
        assert child.stdin is not None
        try:
            while data := await process.stdin.read(65536):
                child.stdin.write(data)
                await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass
        finally:
            with contextlib.suppress(Exception):
                child.stdin.close()

    @staticmethod
    async def _kill_group(child: asyncio.subprocess.Process, waiting: asyncio.Task[int]) -> None:
        # SIGTERM first: the hook turns it into a clean abort that removes what it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), KILL_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


async def _fd_ready(fd: int, *, write: bool) -> None:
    """Wait until the non-blocking `fd` can be read (or written) without holding a thread."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    cols, rows, xpix, ypix = size
    if cols and rows:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


async def serve(platform: Platform) -> None:
    server = await Appliance(platform).start()
    try:
        await server.wait_closed()
    finally:
        server.close()
