"""Wiring an SSH channel to local descriptors: git's pipes (bridge), and a one-off's pipes or pty
(attach). FACTS: asyncssh's redirect of stdin loses a large push's tail, so stdin is always
pumped by hand with back-pressure; output goes to asyncssh as raw descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Callable

import asyncssh

from scheduler.base import Stdio

KILL_GRACE = 10.0


# -- attached one-offs (run) -----------------------------------------------------------------
async def attach(process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
    """Call `fn` (in a worker thread) with descriptors wired to the channel: a pty sized like
    the client's terminal when it asked for one, else three pipes. Returns what `fn` returns,
    once its output has reached the client."""
    if process.get_terminal_type() is None:
        return await _attach_pipes(process, fn)
    return await _attach_pty(process, fn)


async def _attach_pipes(process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    os.set_blocking(w_in, False)
    await process.redirect(stdout=r_out, stderr=r_err, send_eof=False)
    stdin = [w_in]  # the pump closes it at the client's EOF (and says so by clearing it)
    pump = asyncio.create_task(_pump_to_fd(process, stdin))
    try:
        return await asyncio.to_thread(fn, Stdio(stdin=r_in, stdout=w_out, stderr=w_err))
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        for fd in (r_in, w_out, w_err, *stdin):  # w_out, w_err: the end for asyncssh's readers
            os.close(fd)


async def _attach_pty(process: asyncssh.SSHServerProcess[bytes], fn: Callable[[Stdio], int]) -> int:
    """Both directions pumped by hand, so a resize reaches the pty (TIOCSWINSZ; the kernel tells
    the process that owns the terminal), and the output is read to its end (EIO once every
    holder of the other end is gone) before the session exits."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    try:
        _set_winsize(slave, process.get_terminal_size())
        reader = asyncio.create_task(_pump_from_pty(process, master))
        writer = asyncio.create_task(_pump_to_fd(process, [master], resize=True))
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


async def _pump_to_fd(
    process: asyncssh.SSHServerProcess[bytes], target: list[int], resize: bool = False
) -> None:
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


async def bridge(process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]) -> int:
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
    pump = asyncio.create_task(_pump(process, child))
    closed = asyncio.create_task(process.channel.wait_closed())
    waiting = asyncio.create_task(child.wait())
    await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        await _kill_group(child, waiting)
    closed.cancel()
    pump.cancel()
    rc = await waiting
    return rc if rc >= 0 else 128 - rc


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
