"""What every build sees of the operator's network settings (pure: tests compare them exactly).

build_ca_bundle   mounted read-only at CA_TARGET in the slugbuilder and named by CA_VARS there
                  (pip, npm/node, Python's ssl, requests, git); the host's git trusts it for
                  third-party buildpack clones (GIT_SSL_CAINFO)
build_env         KEY=VALUE defaults (mirrors, proxies): an env file of the slugbuilder (never argv);
                  app config vars (ENV_DIR) override them in the buildpacks. Proxy variables among
                  them reach the host's buildpack clones too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def host_git_env(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a buildpack clone on the host. The hook runs with GIT_DIR and git's quarantine
    variables set: a clone must not see them. The build CA bundle and the operator's proxies apply."""
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    if settings.build_ca_bundle is not None:
        env["GIT_SSL_CAINFO"] = str(settings.build_ca_bundle)
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
