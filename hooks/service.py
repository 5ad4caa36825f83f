"""The appliance's side of the pre-receive hook: runs `hooks.pre_receive.run` for a hook process that
connected to the deploy socket, streaming its output back as JSON lines ({"out": text}, then
{"exit": code}).

The socket is created 0600 and only a peer of our own uid is served. When the hook goes away (the
pusher hung up and the SSH server killed it), the next line the deploy prints raises
KeyboardInterrupt in the deploy thread, which unwinds it like a SIGTERM would unwind the hook:
the rollout removes what it started and the release is not recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from appliance.platform import Platform
from core.output import Output
from hooks.pre_receive import run

log = logging.getLogger("deis.hooks")


class _Relay:
    """A text stream for the deploy thread: each write goes to the hook as one JSON line."""

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: asyncio.StreamWriter, gone: threading.Event):
        self.loop = loop
        self.writer = writer
        self.gone = gone

    def write(self, text: str) -> int:
        if self.gone.is_set():
            raise KeyboardInterrupt  # the pusher is gone: stop the deploy at this step
        if not text:
            return 0  # Output.poll(): only asks whether the pusher is still there
        line = json.dumps({"out": text}).encode() + b"\n"
        # Back-pressure: a pusher that stops reading stops the deploy's output here, not in our memory.
        sent = asyncio.run_coroutine_threadsafe(self._send(line), self.loop)
        while True:
            try:
                sent.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                if self.gone.is_set():
                    sent.cancel()
                    raise KeyboardInterrupt from None
            except Exception:  # the hook's socket broke: the hang-up check above ends the deploy
                break
        return len(text)

    async def _send(self, line: bytes) -> None:
        self.writer.write(line)
        await self.writer.drain()

    def flush(self) -> None:
        pass


def _run_in_thread(request: dict[str, Any], relay: _Relay, platform: Platform) -> int:
    try:
        return run(str(request["stdin"]), dict(request["env"]), Output(relay), platform)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 1  # the hook went away mid-deploy; what the deploy started is already cleaned up


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


# Deploys running here, by app: the SSH server holds the app's lock until the deploy is over, not
# just until the hook process exits (after a hang-up the deploy still has to unwind).
_running: dict[str, asyncio.Future[int]] = {}


async def finished(app: str) -> None:
    """Return once no deploy of `app` runs here."""
    deploy = _running.get(app)
    if deploy is not None:
        await asyncio.gather(deploy, return_exceptions=True)


async def _handle(platform: Platform, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if _peer_uid(writer) != os.getuid():
            return
        request = json.loads(await reader.readline())
        loop = asyncio.get_running_loop()
        gone = threading.Event()
        deploy = asyncio.ensure_future(
            asyncio.to_thread(_run_in_thread, request, _Relay(loop, writer, gone), platform)
        )
        app = str(request["env"].get("DEIS_APP", ""))
        _running[app] = deploy
        deploy.add_done_callback(lambda f: _running.pop(app, None) if _running.get(app) is f else None)
        hangup = asyncio.ensure_future(reader.read())  # returns at EOF: the hook process ended
        await asyncio.wait({deploy, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if not deploy.done():
            gone.set()
        try:
            code = await deploy
        except Exception:
            log.exception("deploy failed")
            code = 1
        hangup.cancel()
        writer.write(json.dumps({"exit": code}).encode() + b"\n")
        with contextlib.suppress(Exception):
            await writer.drain()
    finally:
        writer.close()


async def serve(path: Path, platform: Platform) -> asyncio.AbstractServer:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
    try:
        # A push's ref lines and environment can exceed asyncio's 64 KiB line limit (many tags).
        handle = functools.partial(_handle, platform)
        return await asyncio.start_unix_server(handle, path=str(path), limit=16 << 20)
    finally:
        os.umask(old)
