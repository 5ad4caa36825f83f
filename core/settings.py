"""Where the platform keeps its state and which ports it uses.

`deis up` writes the settings it was started with to `STATE_DIR/config.json`; every other process
(the hook, the admin CLI, the appliance) reads them back from there, so one state directory is one
platform. Environment variables (`DEIS_*`) override the file; the defaults are the documented ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/deis"

# field name -> environment variable
_ENV = {
    "ssh_host": "DEIS_SSH_HOST",
    "ssh_port": "DEIS_SSH_PORT",
    "http_port": "DEIS_HTTP_PORT",
    "https_port": "DEIS_HTTPS_PORT",
    "etcd_port": "DEIS_ETCD_PORT",
    "etcd_peer_port": "DEIS_ETCD_PEER_PORT",
    "registry_port": "DEIS_REGISTRY_PORT",
    "domain": "DEIS_DOMAIN",
    "stack_image": "DEIS_STACK_IMAGE",
    "healthcheck_timeout": "DEIS_HEALTHCHECK_TIMEOUT",
    "stop_grace": "DEIS_STOP_GRACE",
    "lock_wait": "DEIS_LOCK_WAIT",
    "keep_images": "DEIS_KEEP_IMAGES",
    "local_buildpacks": "DEIS_LOCAL_BUILDPACKS",
}


@dataclass
class Settings:
    state_dir: Path = field(default_factory=lambda: Path(DEFAULT_STATE_DIR))
    ssh_host: str = "0.0.0.0"
    ssh_port: int = 2222
    http_port: int = 80
    # The router's TLS port (SNI: the platform certificate, or an app's own from certs:add).
    https_port: int = 443
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    registry_port: int = 5000
    domain: str = "localhost"
    stack_image: str = "deis/stack:bookworm"
    # Seconds a new container may take to pass its health check unless the app sets HEALTHCHECK_TIMEOUT.
    healthcheck_timeout: float = 30.0
    # Seconds between SIGTERM and SIGKILL when an old container is retired.
    stop_grace: float = 10.0
    # Seconds a second deploy of one app waits for the first before giving up.
    lock_wait: float = 600.0
    # Release images kept on the host per app; older ones stay in the registry.
    keep_images: int = 5
    # Colon-separated host directories where file:// or path buildpacks may live (none by default).
    local_buildpacks: str = ""

    # -- derived -----------------------------------------------------------------------------
    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def repos_dir(self) -> Path:
        return self.state_dir / "repos"

    @property
    def nginx_dir(self) -> Path:
        return self.state_dir / "nginx"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def host_key(self) -> Path:
        return self.state_dir / "ssh_host_ed25519_key"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "config.json"

    def app_url(self, app: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{app}.{self.domain}{port}"

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: str | os.PathLike[str] | None = None) -> Settings:
        """Defaults, then STATE_DIR/config.json, then DEIS_* environment variables."""
        root = Path(state_dir or os.environ.get("DEIS_STATE_DIR") or DEFAULT_STATE_DIR)
        values: dict[str, object] = {}
        cfg = root / "config.json"
        if cfg.exists():
            values.update(json.loads(cfg.read_text()))
        for name, var in _ENV.items():
            if var in os.environ:
                values[name] = os.environ[var]
        values.pop("state_dir", None)
        return cls.from_dict(root, values)

    @classmethod
    def from_dict(cls, state_dir: Path, values: dict[str, object]) -> Settings:
        s = cls(state_dir=state_dir)
        for f in dataclasses.fields(cls):
            if f.name in values and f.name != "state_dir":
                current = getattr(s, f.name)
                setattr(s, f.name, type(current)(values[f.name]))
        return s

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["state_dir"] = str(self.state_dir)
        return d

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, self.config_file)

    def env(self) -> dict[str, str]:
        """What a child process (the git hook) needs to find this platform again."""
        return {"DEIS_STATE_DIR": str(self.state_dir)}
