"""Buildpack builds, the Heroku way (Deis v1's slugbuilder and slugrunner).

    export the commit   -> WORK/app                     (git archive, on the host)
    choose buildpacks   -> BUILDPACK_URL, else .buildpacks, else the built-ins, first to detect wins
    fetch them          -> cloned in a container as the build user, no credentials (builders.bpfetch)
    compile             -> an ephemeral slugbuilder container runs bin/detect, bin/compile
                           BUILD_DIR CACHE_DIR ENV_DIR and bin/release of each (slugbuilder/build),
                           with the CA bundle mounted read-only and the operator's build env file;
                           the buildpacks install from PyPI / npm (or the mirrors named)
    slug                -> WORK/slug.tgz, the compiled /app ("Compiled slug size is N")
    image               -> slugrunner + the slug (a docker build of a two-file context), pushed

The buildpacks are the tenant's code: they run as the unprivileged build user (settings.build_uid) with
no capability, no-new-privileges and a pids limit; that user owns WORK/app and the cache, never WORK/out
(the driver's, root's). The host reads back only /out/release-NN.yml (builders.buildfs.read_output:
no symlink, no FIFO, bounded, then checked), writes the merged Procfile fresh into WORK/meta (never into
the tree the build had) and strips the cache of setuid/setgid bits and special files after each build.

Config vars reach the compile only through ENV_DIR, one file per var holding its exact bytes.
Each app's CACHE_DIR (STATE_DIR/cache/APP) survives between builds; `builds:purge-cache` empties it.
The image's entry point is the runner's /runner/init: `start TYPE` runs a Procfile type.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from builders import bpfetch, buildenv, buildfs, buildnet, buildrun, source, stacks
from builders.builderfiles import engine_path
from core import dockercli
from core.dockercli import Mount
from core.errors import BuildError, ValidationError
from core.names import PROCESS_TYPE_RE
from core.output import Output
from core.settings import Settings

HERE = Path(__file__).resolve().parent
BUILTIN_DIR = HERE / "buildpacks"
BUILTIN_ORDER = ("python", "nodejs", "static", "procfile")
DRIVER = HERE / "slugbuilder" / "build"
STACK = "bookworm"
LABEL_BUILD = "io.deis.build"
# The driver's exit statuses (slugbuilder/build).
NOT_DETECTED, COMPILE_FAILED, RELEASE_FAILED = 100, 101, 102
RELEASE_LIMIT = 64 << 10  # bytes of bin/release output the host reads
RELEASE_KEY = re.compile(r"[a-z][a-z0-9_-]*")
# The driver's only capabilities: to become the build user (slugbuilder/build).
DRIVER_CAPS = ("SETUID", "SETGID")


@dataclass(frozen=True)
class Buildpack:
    """One buildpack to run: a built-in (`path` set) or a git URL still to fetch."""

    name: str  # what messages call it: the built-in's name or the URL as given
    url: str = ""
    ref: str = ""
    path: Path | None = None


# -- pure parts -------------------------------------------------------------------------------------


def parse_buildpack(text: str) -> Buildpack:
    """`python` (a built-in), or a git URL / host path with an optional `#ref`."""
    text = text.strip()
    short = text.removeprefix("heroku/")
    if short in BUILTIN_ORDER:
        return Buildpack(name=short, path=BUILTIN_DIR / short)
    url, _, ref = text.partition("#")
    if not url:
        raise ValidationError(
            f"invalid buildpack {text!r}: expected a git URL or path, with an optional #ref"
        )
    try:
        bpfetch.check_url(url, text)
    except ValidationError as exc:
        raise ValidationError(f"{exc.message} (or a built-in: {', '.join(BUILTIN_ORDER)})") from exc
    if ref.startswith("-"):
        raise ValidationError(f"invalid buildpack ref {ref!r}")
    return Buildpack(name=text, url=url, ref=ref)


def parse_buildpacks_file(text: str) -> list[Buildpack]:
    """A `.buildpacks` file: one buildpack a line; blank lines and `#` comments skipped."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            found.append(parse_buildpack(line))
    return found


def choose(config: dict[str, str], buildpacks_file: str | None) -> tuple[str, list[Buildpack]]:
    """(mode, buildpacks): `all` when the app names them (BUILDPACK_URL, .buildpacks), else `auto`."""
    if config.get("BUILDPACK_URL", "").strip():
        return "all", [parse_buildpack(config["BUILDPACK_URL"])]
    if buildpacks_file is not None:
        named = parse_buildpacks_file(buildpacks_file)
        if named:
            return "all", named
    return "auto", [Buildpack(name=n, path=BUILTIN_DIR / n) for n in BUILTIN_ORDER]


def builder_argv(
    container: str,
    image: str,
    work: Path,
    cache: Path,
    buildpacks: list[Path],
    names: list[str],
    mode: str,
    sha: str,
    platform: str,
    ca_bundle: str | None = None,
    env_file: str | None = None,
    uid: int = 64999,
    pids_limit: int | None = None,
    memory: int | None = None,
    network: str | None = None,
) -> list[str]:
    """The ephemeral slugbuilder container (pure: tests compare it exactly). `ca_bundle` (a host file)
    is mounted read-only and named by buildenv.CA_VARS; `env_file` holds the operator's build env.
    The driver starts as root without capabilities but DRIVER_CAPS; the buildpacks run as `uid`,
    on `network` (builders.buildnet's bridge: the internet only), within `memory` bytes."""
    ca = buildenv.ca_mount_and_env(ca_bundle)
    mounts = [
        Mount(str(work / "app"), "/app"),
        Mount(str(cache), "/cache"),
        Mount(str(work / "env"), "/env", read_only=True),
        Mount(str(work / "out"), "/out"),
        Mount(str(engine_path(DRIVER)), "/builder/build", read_only=True),
        *(
            Mount(str(engine_path(path)), f"/buildpacks/{i:02d}", read_only=True)
            for i, path in enumerate(buildpacks)
        ),
        *ca[0],
    ]
    return dockercli.run(
        dockercli.Run(
            image=image,
            command=["/builder/build", mode, *names],
            name=container,
            labels={"io.deis.platform": platform, LABEL_BUILD: container},
            env={"STACK": STACK, "SOURCE_VERSION": sha, "BUILD_UID": str(uid), **ca[1]},
            mounts=mounts,
            env_file=env_file,
            pull_never=True,
            user="0:0",
            cap_drop=["ALL"],
            cap_add=list(DRIVER_CAPS),
            security_opt=["no-new-privileges"],
            pids_limit=pids_limit,
            memory=memory,
            network=network,
        )
    )


def env_files(config: dict[str, str]) -> dict[str, bytes]:
    """ENV_DIR's content: one file per config var, named by the key, holding the value's exact bytes."""
    return {key: value.encode("utf-8", "surrogateescape") for key, value in config.items()}


def process_types(releases: list[str], procfile: dict[str, str]) -> dict[str, str]:
    """bin/release's `default_process_types` (later buildpacks win), then the Procfile over them.
    The YAML is the tenant's: its keys and process types must match RELEASE_KEY / PROCESS_TYPE_RE and
    every command be one line of text, or the build stops with one line saying which."""
    merged: dict[str, str] = {}
    for text in releases:
        doc = _release_doc(text)
        defaults = doc.get("default_process_types") or {}
        if not isinstance(defaults, dict):
            raise BuildError("bin/release's default_process_types is not a mapping")
        for ptype, command in defaults.items():
            if not isinstance(ptype, str) or not PROCESS_TYPE_RE.fullmatch(ptype):
                raise BuildError(f"bin/release names an invalid process type {str(ptype)[:40]!r}")
            if not isinstance(command, str) or not command.strip() or any(c in command for c in "\0\r\n"):
                raise BuildError(f"bin/release's command for {ptype} is not one line of text")
            merged[ptype] = command.strip()
    merged.update(procfile)
    return merged


def _release_doc(text: str) -> dict[str, object]:
    try:
        doc = yaml.safe_load(text) if text.strip() else None
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "nested too deeply"
        raise BuildError(f"bin/release printed invalid YAML: {first[:200]}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BuildError("bin/release printed YAML that is not a mapping")
    for key in doc:
        if not isinstance(key, str) or not RELEASE_KEY.fullmatch(key):
            raise BuildError(f"bin/release printed an invalid key {str(key)[:40]!r}")
    return doc


def procfile_text(procs: dict[str, str]) -> str:
    """The slug's Procfile, normalized (`type: command` a line) for the runner's `start TYPE`."""
    return "".join(f"{ptype}: {command}\n" for ptype, command in sorted(procs.items()))


def slug_dockerfile(runner_image: str) -> str:
    # The runner image carries ENTRYPOINT /runner/init and WORKDIR /app; ADD unpacks the slug.
    return f"FROM {runner_image}\nADD slug.tgz /app\n"


def human_size(size: int) -> str:
    """Sizes as `du -h` prints them (Deis's slugbuilder prints the slug's that way)."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}".replace(".0", "")
    return f"{size}B"


def cache_dir(settings: Settings, app: str) -> Path:
    return settings.state_dir / "cache" / app


def purge_cache(settings: Settings, app: str) -> int:
    """Empty the app's build cache; returns the bytes it held."""
    path = cache_dir(settings, app)
    if not path.exists():
        return 0
    size = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(path)
    return size


# -- the build --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slug:
    path: Path
    size: int
    procfile: dict[str, str]  # every process type, `release` included


def _export(src: source.Source, dest: Path, uid: int) -> None:
    dest.mkdir(parents=True)
    src.extract(dest)  # streamed to disk: a push may unpack to as much as the push size limit
    buildfs.hand_over(dest, uid)  # the build user's: bin/compile works in it


def _write_env(env_dir: Path, config: dict[str, str]) -> None:
    env_dir.mkdir()
    for key, data in env_files(config).items():
        (env_dir / key).write_bytes(data)


def compile_slug(
    settings: Settings,
    src: source.Source,
    app: str,
    config: dict[str, str],
    work: Path,
    out: Output,
) -> Slug:
    """Everything up to the slug tarball (WORK/slug.tgz). `work` is an empty host directory."""
    files = src.top_level_files()
    text = src.read_file(".buildpacks") if ".buildpacks" in files else None
    mode, chosen = choose(config, text)
    procfile_src = src.read_file("Procfile") if "Procfile" in files else None
    procfile = source.parse_procfile(procfile_src) if procfile_src else {}
    paths = _prepare(settings, src, config, chosen, work, out)
    cache = _open_cache(settings, app)
    container = f"deis-build-{app}-{uuid.uuid4().hex[:8]}"
    argv = builder_argv(
        container,
        stacks.BUILDER_IMAGE,
        work,
        cache,
        paths,
        [bp.name for bp in chosen],
        mode,
        src.sha,
        str(settings.state_dir),
        ca_bundle=os.path.realpath(settings.build_ca_bundle) if settings.build_ca_bundle else None,
        env_file=_env_file(settings, work),
        uid=settings.build_uid,
        pids_limit=settings.build_pids_limit,
        memory=settings.build_memory,
        network=buildnet.ensure_bridge(str(settings.state_dir)).name,
    )
    try:
        code = buildrun.run_streamed(argv, out.line, container, settings.build_timeout)
    finally:
        buildfs.sanitize(cache, settings.build_uid)  # whatever the build left there, even if it failed
    _check_exit(code, mode, chosen, work)
    procs = _discover(work, procfile, len(chosen), out)
    return _pack(work, procs, out)


def _open_cache(settings: Settings, app: str) -> Path:
    """The app's cache dir, the build user's. One an earlier (root) build left is handed over first."""
    cache = cache_dir(settings, app)
    cache.mkdir(parents=True, exist_ok=True)
    if cache.lstat().st_uid != settings.build_uid:
        buildfs.sanitize(cache, settings.build_uid)
    return cache


def _env_file(settings: Settings, work: Path) -> str | None:
    path = buildenv.write_env_file(settings, work / "build.env")
    return str(path) if path else None


def _prepare(
    settings: Settings,
    src: source.Source,
    config: dict[str, str],
    chosen: list[Buildpack],
    work: Path,
    out: Output,
) -> list[Path]:
    """WORK/app (the commit, the build user's), WORK/env (ENV_DIR), WORK/out (the driver's), and the
    buildpacks' directories (local ones are checked before anything is fetched)."""
    allowed = [Path(p) for p in settings.local_buildpacks.split(":") if p]
    for bp in chosen:
        if bp.url:
            bpfetch.check_local(bp.url, allowed, settings.state_dir)
    _export(src, work / "app", settings.build_uid)
    _write_env(work / "env", config)
    (work / "out").mkdir(mode=0o755)
    return [
        bp.path if bp.path is not None else
        bpfetch.fetch(settings, bp.name, bp.url, bp.ref, work / f"buildpack-{i:02d}", out)
        for i, bp in enumerate(chosen)
    ]  # fmt: skip


def _check_exit(code: int, mode: str, chosen: list[Buildpack], work: Path) -> None:
    """The slug compiler's exit status as the user's one-line error."""
    if code == NOT_DETECTED:
        if mode == "auto":
            raise BuildError(
                "no buildpack detects this app: add a requirements.txt, package.json, index.html,"
                " Procfile or Dockerfile, or set BUILDPACK_URL"
            )
        raise BuildError("the app is not compatible with the buildpack it names (see above)")
    if code in (COMPILE_FAILED, RELEASE_FAILED):
        failed = _read_small(work / "out" / "failed", 16)
        name = chosen[int(failed)].name if failed.isdigit() and int(failed) < len(chosen) else "the buildpack"
        step = "compile" if code == COMPILE_FAILED else "release"
        said = _read_small(work / "out" / "error")
        raise BuildError(f"{name}: {said}" if said else f"{name}: bin/{step} failed (see its output above)")
    if code == 125:  # docker's own failure, before the driver ran
        raise BuildError(f"cannot start the slugbuilder (is {stacks.BUILDER_IMAGE} made? deis stacks:build)")
    if code != 0:
        raise BuildError(f"the slug compiler exited with status {code}")


def _read_small(path: Path, limit: int = 4096) -> str:
    """A file the build wrote, as one line of at most `limit` bytes (the build controls it: no link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return " ".join(f.read(limit).decode("utf-8", "replace").split())


def _discover(work: Path, procfile: dict[str, str], count: int, out: Output) -> dict[str, str]:
    """The process types: the buildpacks' defaults (bin/release), then the Procfile over them. The
    merged Procfile is written fresh to WORK/meta, a directory no build ever saw."""
    releases = []
    for i in range(count):
        data = buildfs.read_output(
            work / "out" / f"release-{i:02d}.yml", RELEASE_LIMIT, "bin/release's output"
        )
        if data is not None:
            releases.append(data.decode("utf-8", "replace"))
    procs = process_types(releases, procfile)
    if not {p for p in procs if p != "release"}:
        raise BuildError("the app declares no process types: add a Procfile (for example `web: COMMAND`)")
    (work / "meta").mkdir()
    (work / "meta" / "Procfile").write_text(procfile_text(procs))
    out.step("Discovering process types")
    out.detail(f"Procfile declares types -> {', '.join(sorted(procfile)) if procfile else '(none)'}")
    defaults = sorted(set(procs) - set(procfile))
    if defaults:
        out.detail(f"Default types for buildpack -> {', '.join(defaults)}")
    return procs


def slug_tar_argv(work: Path) -> list[str]:
    """The slug: the compiled tree (no symlink followed, owned by root, no setuid/setgid bit) without
    its own top-level Procfile, then the merged one from WORK/meta."""
    return [
        "tar", "-czf", str(work / "slug.tgz"), "--owner=0", "--group=0", "--numeric-owner",
        "--mode=ug-s", "--anchored", "--exclude=./Procfile",
        "-C", str(work / "app"), ".", "-C", str(work / "meta"), "Procfile",
    ]  # fmt: skip


def _pack(work: Path, procs: dict[str, str], out: Output) -> Slug:
    slug = work / "slug.tgz"
    out.step("Compiling slug")
    r = subprocess.run(
        slug_tar_argv(work),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if r.returncode != 0:
        raise BuildError(f"cannot pack the slug: {r.stderr.strip()}")
    size = slug.stat().st_size
    out.step(f"Compiled slug size is {human_size(size)}")
    return Slug(slug, size, procs)


def slug_context(slug: Path, runner_image: str) -> bytes:
    """The docker build context of the app image: a Dockerfile and the slug."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = slug_dockerfile(runner_image).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
        tar.add(slug, arcname="slug.tgz")
    return buf.getvalue()


def workspace(settings: Settings) -> Path:
    """A fresh host directory for one build (under the state dir: docker bind-mounts it)."""
    root = settings.state_dir / "builds"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=root))
