"""A small client of fleet's HTTP API (v1), over its unix socket or TCP. The facts it relies on (seen on a
real fleetd, see ../shared/FACTS.md):

    PUT    /fleet/v1/units/NAME  {"desiredState": "launched", "options": [...]}  -> 201 (created)
    PUT    /fleet/v1/units/NAME  {"desiredState": "inactive"}                    -> 204
    DELETE /fleet/v1/units/NAME                                                  -> 204
    GET    /fleet/v1/units | /state | /machines   {"units"|"states"|"machines": [...], "nextPageToken": T}

fleetd serves it only on sockets systemd hands it (`fleet.socket`): the endpoint is configurable,
`unix:///var/run/fleet.sock` (the default) or `http://HOST:PORT`. Errors become ServiceError once, here.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any, Final

from core.errors import ServiceError

DEFAULT_ENDPOINT: Final = "unix:///var/run/fleet.sock"
PREFIX: Final = "/fleet/v1"
MAX_PAGES: Final = 1000  # a server that keeps handing out tokens must not hold us forever


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class FleetClient:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme == "unix" and url.path:
            self._unix: str | None = url.path
            self._host = ""
            self._port = 0
        elif url.scheme == "http" and url.hostname:
            self._unix = None
            self._host = url.hostname
            self._port = url.port or 80
        else:
            raise ServiceError(f"fleet endpoint must be unix:///PATH or http://HOST:PORT, not {endpoint!r}")
        self.endpoint = endpoint
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON or None). Only transport failures raise here."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn = self._connection()
        try:
            conn.request(method, PREFIX + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceError(f"fleet at {self.endpoint} does not answer: {exc}") from exc
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise ServiceError(f"fleet at {self.endpoint} answered {method} {path} with no JSON") from exc

    def _expect(self, method: str, path: str, body: Any, ok: tuple[int, ...]) -> int:
        status, answer = self.request(method, path, body)
        if status not in ok:
            message = ""
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                message = f": {answer['error'].get('message', '')}"
            raise ServiceError(f"fleet refused {method} {path} (HTTP {status}){message}")
        return status

    def put_unit(self, name: str, desired: str, options: list[dict[str, str]] | None = None) -> int:
        """Create a unit (with options: 201) or change its desired state (204)."""
        body: dict[str, Any] = {"desiredState": desired}
        if options is not None:
            body["options"] = options
        return self._expect("PUT", f"/units/{_quote(name)}", body, (201, 204))

    def delete_unit(self, name: str) -> bool:
        """Destroy a unit; False when fleet had none of that name."""
        return self._expect("DELETE", f"/units/{_quote(name)}", None, (204, 404)) == 204

    def _list(self, what: str, key: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        for _ in range(MAX_PAGES):
            params = dict(query or {}) | ({"nextPageToken": token} if token else {})
            path = f"/{what}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
            status, answer = self.request("GET", path)
            if status != 200 or not isinstance(answer, dict):
                raise ServiceError(f"fleet refused GET {path} (HTTP {status})")
            items += [item for item in answer.get(key) or [] if isinstance(item, dict)]
            token = str(answer.get("nextPageToken") or "")
            if not token:
                return items
        raise ServiceError(f"fleet kept paging /{what} past {MAX_PAGES} pages")

    def units(self) -> list[dict[str, Any]]:
        return self._list("units", "units")

    def states(self) -> list[dict[str, Any]]:
        return self._list("state", "states")

    def machines(self) -> list[dict[str, Any]]:
        return self._list("machines", "machines")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="@.")
