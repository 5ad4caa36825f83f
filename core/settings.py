"""Where the platform keeps its state and which ports it uses.

`deis up` writes the settings it was started with to `STATE_DIR/config.json`; every other process
(the hook, the admin CLI, the appliance) reads them back from there, so one state directory is one
platform. Environment variables (`DEIS_*`) override the file; the defaults are the documented ones.

Build settings for networks that intercept TLS or need a mirror (`deis up --build-ca-bundle FILE`,
`--build-env KEY=VALUE`): `build_ca_bundle` is the PEM bundle every build trusts (default: the host's
system bundle when present; None: the stack's own), `build_env` the operator's KEY=VALUE defaults every
build sees (an app's config vars override them). `DEIS_BUILD_ENV` holds them one per line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from core import pki, regauth
from core.errors import ServiceError

DEFAULT_STATE_DIR = "/var/lib/deis"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_ca_bundle() -> Path | None:
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None


def parse_build_env(items: object) -> tuple[str, ...]:
    """KEY=VALUE strings, checked: a valid key, no NUL or line break in the value (an env file holds them)."""
    if isinstance(items, str):
        items = items.splitlines()
    if not isinstance(items, (list, tuple)):
        raise ValueError("build_env must be a list of KEY=VALUE")
    found = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise ValueError(f"invalid build env {item!r}: expected KEY=VALUE with KEY like PIP_INDEX_URL")
        if any(c in value for c in "\0\n\r"):
            raise ValueError(f"invalid build env {key}: the value may not hold a NUL or a line break")
        found.append(f"{key}={value}")
    return tuple(found)


def check_ca_bundle(path: str | os.PathLike[str], what: str = "build") -> Path:
    """An operator's CA bundle: an existing, readable PEM file with at least one certificate."""
    p = Path(path).absolute()
    try:
        head = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} CA bundle {p}: {exc.strerror or exc}") from exc
    if not p.is_file() or b"-----BEGIN CERTIFICATE-----" not in head:
        raise ValueError(f"the {what} CA bundle {p} holds no PEM certificate")
    return p


# Under the state dir, readable by root only: etcd's data (config, keys, certificates), the
# registry's images, the apps' repositories and build caches, logs, sockets and pidfiles.
PRIVATE_DIRS = (
    "etcd",
    "registry",
    "repos",
    "cache",
    "builds",
    "log",
    "run",
    "buildah",
    "acme",
    "services",
    "volumes",
)

# Optional file settings: a Path or None (saved as a string or null).
_PATHS = ("build_ca_bundle", "drain_ca_bundle", "acme_ca_bundle")

# field name -> environment variable
_ENV = {
    "ssh_host": "DEIS_SSH_HOST",
    "ssh_port": "DEIS_SSH_PORT",
    "http_port": "DEIS_HTTP_PORT",
    "https_port": "DEIS_HTTPS_PORT",
    "etcd_port": "DEIS_ETCD_PORT",
    "etcd_peer_port": "DEIS_ETCD_PEER_PORT",
    "etcd_name": "DEIS_ETCD_NAME",
    "etcd_cluster": "DEIS_ETCD_CLUSTER",
    "etcd_endpoints": "DEIS_ETCD_ENDPOINTS",
    "registry_port": "DEIS_REGISTRY_PORT",
    "domain": "DEIS_DOMAIN",
    "stack_image": "DEIS_STACK_IMAGE",
    "healthcheck_timeout": "DEIS_HEALTHCHECK_TIMEOUT",
    "stop_grace": "DEIS_STOP_GRACE",
    "lock_wait": "DEIS_LOCK_WAIT",
    "keep_images": "DEIS_KEEP_IMAGES",
    "build_timeout": "DEIS_BUILD_TIMEOUT",
    "build_subnet": "DEIS_BUILD_SUBNET",
    "build_memory": "DEIS_BUILD_MEMORY",
    "build_pids_limit": "DEIS_BUILD_PIDS_LIMIT",
    "dockerfile_builder": "DEIS_DOCKERFILE_BUILDER",
    "local_buildpacks": "DEIS_LOCAL_BUILDPACKS",
    "build_ca_bundle": "DEIS_BUILD_CA_BUNDLE",
    "build_env": "DEIS_BUILD_ENV",
    "drain_ca_bundle": "DEIS_DRAIN_CA_BUNDLE",
    "acme_directory": "DEIS_ACME_DIRECTORY",
    "acme_email": "DEIS_ACME_EMAIL",
    "acme_ca_bundle": "DEIS_ACME_CA_BUNDLE",
    "acme_renew_before": "DEIS_ACME_RENEW_BEFORE",
    "acme_check_interval": "DEIS_ACME_CHECK_INTERVAL",
    "acme_retry_min": "DEIS_ACME_RETRY_MIN",
    "acme_retry_max": "DEIS_ACME_RETRY_MAX",
    "build_uid": "DEIS_BUILD_UID",
    "max_scale_per_type": "DEIS_MAX_SCALE_PER_TYPE",
    "max_scale_per_app": "DEIS_MAX_SCALE_PER_APP",
    "router_app_connections": "DEIS_ROUTER_APP_CONNECTIONS",
    "max_push_bytes": "DEIS_MAX_PUSH_BYTES",
    "default_memory": "DEIS_DEFAULT_MEMORY",
    "default_pids_limit": "DEIS_DEFAULT_PIDS_LIMIT",
    "max_sessions_per_user": "DEIS_MAX_SESSIONS_PER_USER",
    "max_preauth_connections": "DEIS_MAX_PREAUTH_CONNECTIONS",
    "max_preauth_per_address": "DEIS_MAX_PREAUTH_PER_ADDRESS",
    "release_timeout": "DEIS_RELEASE_TIMEOUT",
    "log_lines": "DEIS_LOG_LINES",
    "log_bytes": "DEIS_LOG_BYTES",
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
    # An etcd cluster: this member's name, etcd's --initial-cluster (NAME=PEER_URL,...; empty: this
    # member alone) and every member's client URL (comma-separated; empty: this host's own), which
    # the platform's store fails over between.
    etcd_name: str = "deis"
    etcd_cluster: str = ""
    etcd_endpoints: str = ""
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
    # Seconds a Dockerfile build may take before it is killed.
    build_timeout: float = 1200.0
    # What one build container (the slugbuilder, a Dockerfile's RUN step) may use: bytes, processes.
    build_memory: int = 2 << 30
    build_pids_limit: int = 1024
    # Private range the Dockerfile builds' network namespaces take their /30 links from.
    build_subnet: str = "10.213.0.0/16"
    # "buildah" (isolated: its own network namespace) or "docker" (the engine's legacy builder, which
    # fetches ADD URLs from the host: for comparison only, never with tenants you do not trust).
    dockerfile_builder: str = "buildah"
    # Colon-separated host directories where file:// or path buildpacks may live (none by default).
    local_buildpacks: str = ""
    # The CA bundle mounted read-only into every build (None: builds trust only the stack's own CAs).
    build_ca_bundle: Path | None = field(default_factory=default_ca_bundle)
    # The operator's KEY=VALUE defaults for every build (mirrors, proxies); app config vars override them.
    build_env: tuple[str, ...] = ()
    # CAs that TLS log drains (syslog+tls://, https://) are trusted by, beside the system's own.
    drain_ca_bundle: Path | None = None
    # Automatic TLS (certs:auto): the ACME directory (Let's Encrypt's production one by default), the
    # account's contact, and the CA that signs the ACME server's own HTTPS (None: the system's CAs).
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    acme_ca_bundle: Path | None = None
    # Seconds before expiry a certificate is renewed; how often the loop looks; the backoff after a
    # failed issuance (doubling from the first to at most the second).
    acme_renew_before: float = 30 * 86400.0
    acme_check_interval: float = 3600.0
    acme_retry_min: float = 300.0
    acme_retry_max: float = 86400.0
    # The unprivileged user (uid = gid) buildpacks run as, in the slugbuilder and for buildpack clones;
    # a number no host account uses (it owns the build trees and caches under the state dir).
    build_uid: int = 64999
    # What the log store keeps per app (`logs`): the last lines, at most this many and this many bytes.
    log_lines: int = 10_000
    log_bytes: int = 20_000_000

    # -- limits: every resource a tenant can grow has one (DESIGN.md, Trust) -----------------
    # Containers one process type of one app may be scaled to, and all types of one app together.
    max_scale_per_type: int = 100
    max_scale_per_app: int = 200
    # Concurrent connections the router holds for one app (nginx limit_conn); the rest get 503.
    router_app_connections: int = 512
    # A push's size, unpacked (git's receive.maxInputSize for the pack, then the commit's tree).
    max_push_bytes: int = 1 << 30
    # Defaults for app, one-off and release-phase containers; `limits:set` overrides the memory.
    default_memory: int = 1 << 30
    default_pids_limit: int = 512
    # SSH: sessions one user may have open at once; connections not yet authenticated.
    max_sessions_per_user: int = 10
    max_preauth_connections: int = 64
    max_preauth_per_address: int = 8  # of those, from one client address
    # Seconds a release phase (the Procfile's `release:`) may run before it is stopped.
    release_timeout: float = 600.0

    # -- derived -----------------------------------------------------------------------------
    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def registry_url(self) -> str:
        """The registry's API: https (its certificate from core.pki), every request authenticated."""
        return f"https://{self.registry}"

    def registry_auth(self) -> regauth.RegistryAuth:
        try:
            return regauth.load(self.tls_dir)
        except OSError as exc:
            raise ServiceError(
                f"cannot read the registry's credentials ({exc.strerror}: {exc.filename}); run as root"
            ) from exc

    @property
    def etcd_url(self) -> str:
        return f"https://127.0.0.1:{self.etcd_port}"

    @property
    def etcd_urls(self) -> list[str]:
        """Where the platform's store finds etcd: every member, this host's first."""
        others = [u.strip() for u in self.etcd_endpoints.split(",") if u.strip()]
        return [self.etcd_url, *(u for u in others if u != self.etcd_url)]

    @property
    def tls_dir(self) -> Path:
        """The platform's PKI (core.pki): the CA, etcd's server and the platform's client certificate."""
        return self.state_dir.absolute() / "tls"

    @property
    def etcd_tls(self) -> pki.EtcdTLS:
        return pki.client_tls(self.tls_dir)

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
    def upgrade_marker(self) -> Path:
        """Present while `deis up` replaces the platform's components: new SSH sessions wait for it."""
        return self.run_dir / "upgrading"

    @property
    def appliance_ready(self) -> Path:
        """Written by the appliance once it listens: the instance id it was started with."""
        return self.run_dir / "appliance.ready"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def logs_dir(self) -> Path:
        """The apps' log store (releaser.logstore); `log_dir` holds the platform's own logs."""
        return self.state_dir / "app-logs"

    @property
    def metrics_dir(self) -> Path:
        """The apps' request metrics (releaser.metricstore), rolled up per minute."""
        return self.state_dir / "metrics"

    @property
    def acme_account(self) -> Path:
        """The ACME account's key and registration (root only, like etcd's data)."""
        return self.state_dir / "acme" / "account.json"

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
            if f.name not in values or f.name == "state_dir":
                continue
            value = values[f.name]
            if f.name in _PATHS:
                setattr(s, f.name, Path(str(value)) if value not in (None, "") else None)
            elif f.name == "build_env":
                s.build_env = parse_build_env(value)
            else:
                setattr(s, f.name, type(getattr(s, f.name))(value))
        if s.build_memory < (64 << 20) or s.build_pids_limit < 64:
            raise ValueError("build_memory must be at least 64 MiB and build_pids_limit at least 64")
        if s.build_uid <= 0:
            raise ValueError(f"build_uid must be an unprivileged user's number, not {s.build_uid}")
        return s

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["state_dir"] = str(self.state_dir)
        for name in _PATHS:
            value = getattr(self, name)
            d[name] = str(value) if value else None
        d["build_env"] = list(self.build_env)
        return d

    def harden(self) -> None:
        """The state dir's permissions: others may pass through it (nginx's workers reach their temp
        dirs under nginx/) but not list it; what holds secrets or tenants' code is root's alone."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o711)
        for name in PRIVATE_DIRS:
            path = self.state_dir / name
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o700)

    def save(self) -> None:
        self.harden()
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, self.config_file)

    def env(self) -> dict[str, str]:
        """What a child process (the git hook) needs to find this platform again."""
        return {"DEIS_STATE_DIR": str(self.state_dir)}
