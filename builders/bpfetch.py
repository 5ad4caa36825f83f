"""Where a third-party buildpack comes from, and fetching it (BUILDPACK_URL, .buildpacks).

Any app user can name a buildpack, so its URL is the tenant's:

    https://, http://, git://   cloned in an ephemeral slugbuilder container as the build user, with
                                no credentials (no SSH identity, no credential helper, no config but
                                the operator's proxies and CA bundle) and the network every buildpack
                                build gets (builders.buildnet's bridge: the internet, not the host)
    file:///PATH, /PATH         only below the operator's DEIS_LOCAL_BUILDPACKS and never in the state
                                dir; a git repository is cloned the same way from a read-only mount of
                                it, a plain directory is mounted read-only as it is
    anything else               refused in one line (ssh:// and scp-like `host:path` included: there is
                                no identity to clone with, and the host's must never be lent)
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from builders import buildenv, buildfs, buildnet, buildrun, stacks
from builders.builderfiles import engine_path
from core import dockercli
from core.dockercli import Mount
from core.errors import BuildError, ValidationError
from core.output import Output
from core.settings import Settings

HERE = Path(__file__).resolve().parent
FETCHER = HERE / "slugbuilder" / "fetch"
REMOTE_SCHEMES = ("https://", "http://", "git://")
SOURCE = "/source"  # where a local repository is mounted for its clone
# The protocols git may use at all in a clone (redirects, alternates): never ssh, ext or fd.
GIT_PROTOCOLS = "http:https:git:file"
SCP_LIKE = re.compile(r"[\w.-]+@[\w.-]+:(?!:)")  # git@host:path, git's other spelling of ssh


def check_url(url: str, text: str) -> None:
    """A buildpack URL's form (pure); `text` is what the user wrote, for the message."""
    if url.startswith("ssh://") or SCP_LIKE.match(url):
        raise ValidationError(
            f"invalid buildpack {text!r}: ssh clones are not supported (a build has no credentials); use https://"
        )
    if url.startswith(REMOTE_SCHEMES):
        rest = url.split("://", 1)[1]
        if not rest.split("/", 1)[0]:
            raise ValidationError(f"invalid buildpack {text!r}: the URL names no host")
        return
    if url.startswith("file://") or url.startswith("/"):
        local_path(url, text)
        return
    raise ValidationError(
        f"invalid buildpack {text!r}: use https://, http://, git://, file:///PATH or an absolute path"
    )


def local_path(url: str, text: str = "") -> str | None:
    """The host path a `file:///PATH` or `/PATH` buildpack names (None for a remote URL), parsed
    strictly: a file:// URL with a host part, or with escapes git would decode, is refused."""
    if url.startswith("/"):
        return url
    if not url.startswith("file://"):
        return None
    path = url.removeprefix("file://")
    if not path.startswith("/"):
        raise ValidationError(
            f"invalid buildpack {text or url!r}: a file:// URL names no host; write file:///PATH"
        )
    if "%" in path or "?" in path:
        raise ValidationError(
            f"invalid buildpack {text or url!r}: write the path as it is, without % escapes"
        )
    return path


def check_local(url: str, allowed: list[Path], state_dir: Path) -> Path | None:
    """The real host path of a local buildpack, which must live under a directory the operator allowed
    (DEIS_LOCAL_BUILDPACKS), never in the platform's state: otherwise any app user could have host
    files (keys, other apps' repos) copied into their build. None for a remote URL."""
    given = local_path(url)
    if given is None:
        return None
    path = Path(os.path.realpath(given))
    state = Path(os.path.realpath(state_dir))
    inside = [root for root in allowed if path.is_relative_to(os.path.realpath(root))]
    if not inside or path.is_relative_to(state):
        raise BuildError(
            f"buildpack {url} is on the host outside the directories allowed for local buildpacks"
            " (DEIS_LOCAL_BUILDPACKS); use a git URL"
        )
    return path


def is_repository(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def fetch_argv(
    container: str,
    settings: Settings,
    dest: Path,
    url: str,
    ref: str,
    source: Path | None,
    network: str | None = None,
) -> list[str]:
    """The clone's container (pure: tests compare it exactly): the build user, no capability, the
    clone's directory its only writable mount, a local repository read-only at SOURCE."""
    ca_mounts, ca_env = buildenv.ca_mount_and_env(
        os.path.realpath(settings.build_ca_bundle) if settings.build_ca_bundle else None
    )
    mounts = [
        Mount(str(dest), "/buildpack"),
        Mount(str(engine_path(FETCHER)), "/builder/fetch", read_only=True),
        *ca_mounts,
    ]
    if source is not None:
        mounts.append(Mount(str(source), SOURCE, read_only=True))
    env = {
        "HOME": "/tmp",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        **buildenv.proxy_env(settings),
        **ca_env,
    }
    uid = settings.build_uid
    return dockercli.run(
        dockercli.Run(
            image=stacks.BUILDER_IMAGE,
            command=["/builder/fetch", f"file://{SOURCE}" if source is not None else url, ref],
            name=container,
            labels={"io.deis.platform": str(settings.state_dir), "io.deis.build": container},
            env=env,
            mounts=mounts,
            pull_never=True,
            user=f"{uid}:{uid}",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=settings.build_pids_limit,
            memory=settings.build_memory,
            network=network,
        )
    )


def fetch(settings: Settings, name: str, url: str, ref: str, dest: Path, out: Output) -> Path:
    """The buildpack's directory on the host, to mount read-only into the slugbuilder."""
    allowed = [Path(p) for p in settings.local_buildpacks.split(":") if p]
    source = check_local(url, allowed, settings.state_dir)
    out.step(f"Fetching buildpack {name}")
    if source is not None and source.is_dir() and not is_repository(source) and not ref:
        return source  # a plain directory of the operator's: mounted read-only as it is
    dest.mkdir()
    buildfs.hand_over(dest, settings.build_uid)
    container = f"deis-fetch-{uuid.uuid4().hex[:8]}"
    said: list[str] = []

    def emit(line: str) -> None:
        if line.strip():
            said.append(line.strip())
            out.detail(line)

    network = buildnet.ensure_bridge(str(settings.state_dir)).name
    argv = fetch_argv(container, settings, dest, url, ref, source, network)
    code = buildrun.run_streamed(argv, emit, container, settings.build_timeout)
    if code != 0:
        why = said[-1] if said else f"the clone exited with status {code}"
        raise BuildError(f"cannot fetch buildpack {name}: {why}")
    return dest
