"""A fake fleetd API on a unix socket (http.server over AF_UNIX) answering as FACTS.md says a real one
does: PUT with options -> 201, PUT of a desired state -> 204, DELETE -> 204 (404 if unknown), lists
paged with nextPageToken. It records every request; units become `active/running` after `launch_polls`
reads of /state, as fleet's agents take a few seconds."""

from __future__ import annotations

import json
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

PAGE = 2  # small pages: every list a test makes spans several


class FakeFleet:
    def __init__(self, path: Path, launch_polls: int = 1, fail: set[str] | None = None) -> None:
        self.path = path
        self.requests: list[tuple[str, str, Any]] = []
        self.units: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.launch_polls = launch_polls
        self.fail = fail or set()  # units that end `failed`
        self.machines = [
            {"id": "m1", "primaryIP": "10.0.0.1", "metadata": {"region": "eu"}},
            {"id": "m2", "primaryIP": "10.0.0.2", "metadata": {}},
            {"id": "m3", "primaryIP": "10.0.0.3", "metadata": {}},
        ]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def do_PUT(self) -> None:
                body = self._body()
                fake.requests.append(("PUT", self.path, body))
                self._answer(*fake.put(self.path, body))

            def do_DELETE(self) -> None:
                fake.requests.append(("DELETE", self.path, None))
                self._answer(*fake.delete(self.path))

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, None))
                self._answer(200, fake.get(self.path))

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeFleet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _name(path: str) -> str:
        return urllib.parse.unquote(path.removeprefix("/fleet/v1/units/"))

    def put(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        name = self._name(path)
        if name in self.units:
            self.units[name]["desiredState"] = body["desiredState"]
            self.units[name]["currentState"] = body["desiredState"]
            return 204, None
        if "options" not in body:
            return 404, {"error": {"code": 404, "message": "unit does not exist and options field empty"}}
        machine = self.machines[len(self.units) % len(self.machines)]["id"]
        self.units[name] = {"name": name, "options": body["options"], "desiredState": body["desiredState"],
                            "currentState": body["desiredState"], "machineID": machine}  # fmt: skip
        self.polls[name] = 0
        return 201, None

    def delete(self, path: str) -> tuple[int, Any]:
        name = self._name(path)
        if self.units.pop(name, None) is None:
            return 404, {"error": {"code": 404, "message": "unit does not exist"}}
        return 204, None

    def _state(self, unit: dict[str, Any]) -> dict[str, Any]:
        name = unit["name"]
        self.polls[name] += 1
        if unit["desiredState"] != "launched":
            active, sub = "inactive", "dead"
        elif name in self.fail:
            active, sub = "failed", "failed"
        elif self.polls[name] > self.launch_polls:
            active, sub = "active", "running"
        else:
            active, sub = "activating", "start-pre"
        return {"name": name, "machineID": unit["machineID"], "systemdLoadState": "loaded",
                "systemdActiveState": active, "systemdSubState": sub}  # fmt: skip

    def get(self, path: str) -> dict[str, Any]:
        url = urllib.parse.urlsplit(path)
        what = url.path.removeprefix("/fleet/v1/")
        token = urllib.parse.parse_qs(url.query).get("nextPageToken", ["0"])[0]
        if what == "units":
            key, items = "units", list(self.units.values())
        elif what == "state":
            key, items = "states", [self._state(u) for u in self.units.values()]
        else:
            key, items = "machines", self.machines
        start = int(token)
        answer: dict[str, Any] = {key: items[start : start + PAGE]}
        if start + PAGE < len(items):
            answer["nextPageToken"] = str(start + PAGE)
        return answer
