"""What every build sees of the operator's network settings (pure: tests compare them exactly).

build_ca_bundle   mounted read-only at CA_TARGET in the slugbuilder and named by CA_VARS there
                  (pip, npm/node, Python's ssl, requests, git), the buildpack clones' too
build_env         KEY=VALUE defaults (mirrors, proxies): an env file of the slugbuilder (never argv);
                  app config vars (ENV_DIR) override them in the buildpacks. Proxy variables among
                  them reach the buildpack clones too (builders.bpfetch).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.dockercli import Mount
from core.settings import Settings

CA_TARGET = "/etc/deis/build-ca.pem"
CA_VARS = ("PIP_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE")
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def ca_mount_and_env(bundle: str | None) -> tuple[list[Mount], dict[str, str]]:
    """The bundle's read-only mount and the variables that name it in the container (none without one)."""
    if not bundle:
        return [], {}
    return [Mount(bundle, CA_TARGET, read_only=True)], {var: CA_TARGET for var in CA_VARS}


def env_file_text(settings: Settings) -> str:
    """The slugbuilder's --env-file: the operator's build env, one KEY=VALUE a line (checked in settings)."""
    return "".join(f"{item}\n" for item in settings.build_env)


def proxy_env(settings: Settings) -> dict[str, str]:
    """The operator's proxy variables (from build_env): a buildpack clone gets these and nothing else
    of the build env (mirror tokens and the like are for the compile)."""
    env = {}
    for item in settings.build_env:
        key, _, value = item.partition("=")
        if key in PROXY_VARS:
            env[key] = value
    return env


def write_env_file(settings: Settings, path: Path) -> Path | None:
    """The env file beside (never inside) the mounted directories, 0600; None when there is nothing."""
    text = env_file_text(settings)
    if not text:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
