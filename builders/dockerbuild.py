"""Dockerfile builds with buildah, each in a network namespace of its own (builders.buildnet).

    context    the pushed tree, extracted under STATE_DIR/buildah/work (symlinks kept, none followed)
    checks     builders.dockerfile: heredocs, RUN --mount options, bind sources; cache ids made flat
    bases      FROM / COPY --from images come from the local engine: pushed once to the platform
               registry (REGISTRY/base/NAME:ID) and pulled into the shared base store, by image id
    inputs     same context, Dockerfile, build args, secrets and base ids as the app's last build:
               that image again, nothing built or pushed
    build      `nsenter --net=NETNS buildah bud` with the app's own store and cache dir (TMPDIR:
               buildah keeps `RUN --mount=type=cache` there); output streams line by line; killed
               at the time limit or when the pusher hangs up
    push       from the host's namespace to the platform registry; the deploy path is unchanged

Config reaches a build only when the app lists it: `DOCKER_BUILD_ARGS` (names of config vars given
as `--build-arg`, values through buildah's environment, never argv) and `DOCKER_BUILD_SECRETS`
(config vars as `RUN --mount=type=secret,id=NAME`); the operator's build CA bundle is secret
`ca-bundle`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builders import buildah, buildcg, buildfs, buildnet, dockerfile, engine, image, source
from builders.buildah import Store
from core.errors import BuildError, ServiceError
from core.output import Output
from core.settings import Settings

ARGS_VAR = "DOCKER_BUILD_ARGS"
SECRETS_VAR = "DOCKER_BUILD_SECRETS"
CA_SECRET = "ca-bundle"
INPUTS_VERSION = 1
# The name of an app's latest build in its own store: the next build takes it over, so the old image
# is left untagged (its layers stay as cache) without a call to remove it.
LOCAL_NAME = "localhost/build:latest"
# Build arg names buildah would read itself (their values go through its environment).
_RESERVED = re.compile(
    r"^(LD_|GCONV|MALLOC|GLIBC|LOCPATH|NLSPATH|HOSTALIASES|RES_OPTIONS|LOCALDOMAIN|TZDIR|BUILDAH|BUILDKIT|"
    r"CONTAINERS|STORAGE|REGISTR|XDG_|DOCKER|GO|TMPDIR$|PATH$|HOME$|USER$|SHELL$|TERM$|IFS$|SSL_|HTTP|"
    r"NO_PROXY|ALL_PROXY|FTP_PROXY|NOTIFY_SOCKET|DBUS|SYSTEMD|CNI|NETAVARK|CONMON|RUNC|CRUN|OCI|_)",
    re.IGNORECASE,
)
_PART = r"[A-Za-z0-9]+(?:[._-]+[A-Za-z0-9]+)*"
_NAME = re.compile(rf"^{_PART}(?::[0-9]+)?(?:/{_PART})*$")


# -- where things live ----------------------------------------------------------------------------


def home(settings: Settings) -> Path:
    return settings.state_dir / "buildah"


def base_store(settings: Settings) -> Store:
    return Store(home(settings) / "base", home(settings) / "run" / "base")


def app_store(settings: Settings, app: str) -> Store:
    return Store(home(settings) / "apps" / app, home(settings) / "run" / app, base_store(settings).root)


def cache_dir(settings: Settings, app: str) -> Path:
    """TMPDIR of the app's builds: buildah keeps the app's `RUN --mount=type=cache` dirs in it."""
    return home(settings) / "cache" / app


def last_file(settings: Settings, app: str) -> Path:
    return home(settings) / "last" / f"{app}.json"


# -- pure parts -----------------------------------------------------------------------------------


def listed(config: Mapping[str, str], var: str) -> list[str]:
    """The config var names `var` lists (commas or spaces), in order, once each."""
    return list(dict.fromkeys(n for n in re.split(r"[\s,]+", config.get(var, "")) if n))


def build_args(config: Mapping[str, str]) -> dict[str, str]:
    """The build args an app asked for: listed in DOCKER_BUILD_ARGS and set; nothing else."""
    found = {}
    for name in listed(config, ARGS_VAR):
        if _RESERVED.match(name):
            raise BuildError(f"{ARGS_VAR} cannot pass {name}: the builder itself reads that variable")
        if name in config:
            found[name] = config[name]
    return found


def secret_values(config: Mapping[str, str]) -> dict[str, str]:
    return {name: config[name] for name in listed(config, SECRETS_VAR) if name in config}


@dataclass(frozen=True)
class BaseRef:
    """A base image as the Dockerfile names it, and as the engine and the base store know it."""

    written: str  # as in the Dockerfile
    engine_name: str  # docker's RepoTags form: python:3.11, deis/stack:bookworm, quay.io/x/y:1
    store_name: str  # the name buildah resolves it by: localhost/python:3.11, quay.io/x/y:1


def base_ref(written: str, registry: str) -> BaseRef:
    """Check a FROM / COPY --from image name; a BuildError says what is not allowed."""
    if "@" in written:
        raise BuildError(f"base image {written}: images by digest are not supported here; name a tag")
    if written.startswith(f"{registry}/"):
        raise BuildError(f"base image {written}: apps cannot build from the platform registry's images")
    slash, colon = written.rfind("/"), written.rfind(":")
    name, tag = (written[:colon], written[colon + 1 :]) if colon > slash else (written, "latest")
    if not _NAME.match(name) or re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", written) or not tag:
        raise BuildError(f"base image {written!r} is not an image name")
    first = name.split("/")[0]
    qualified = "." in first or ":" in first or first == "localhost"
    short = name
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "library/"):
        if short.startswith(prefix):
            short = short[len(prefix) :]
            break
    store = f"{name}:{tag}" if qualified else f"localhost/{name}:{tag}"
    return BaseRef(written, f"{short}:{tag}", store)


def registry_name(registry: str, ref: BaseRef, image_id: str) -> str:
    """Where a base image is published for buildah to pull: REGISTRY/base/NAME:ID12."""
    name = re.sub(r"[^a-z0-9._/-]", "-", ref.engine_name.rpartition(":")[0].lower())
    return f"{registry}/base/{name}:{image_id.removeprefix('sha256:')[:12]}"


def inputs_key(
    digest: str,
    text: str,
    args: Mapping[str, str],
    secrets: Mapping[str, str],
    bases: Mapping[str, str],
    ca: str,
) -> str:
    """What decides a build's result: the same key means the same image."""
    hidden = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secrets.items()}
    data = {"v": INPUTS_VERSION, "context": digest, "dockerfile": text, "args": dict(args)}
    data |= {"secrets": hidden, "bases": dict(bases), "ca": ca}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def relay_line(raw: bytes) -> tuple[str | None, str | None]:
    """(line to show, error) for one line of buildah's output: `Error: ...` is held back for the
    BuildError (the last thing the pusher sees), logrus warnings are shortened."""
    line = raw.decode("utf-8", "replace").rstrip("\r\n")
    if line.startswith("Error: "):
        return None, line.removeprefix("Error: ").strip()
    match = re.match(r'^time="[^"]*" level=(\w+) msg="(.*)"$', line)
    if match:
        return f"{match.group(1).upper()}: {match.group(2)}", None
    return (line if line.strip() else None), None


# -- running things -------------------------------------------------------------------------------


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        r = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, check=False
        )
    except FileNotFoundError as exc:
        raise ServiceError(f"{what}: {argv[0]} not found (install the buildah package)") from exc
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise ServiceError(f"{what}: {why.removeprefix('Error: ')}")
    return r.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def extract(src: source.Source, dest: Path) -> str:
    """The commit's tree into `dest` (symlinks are kept as links, nothing is written through one),
    streamed through a tar file beside it (never whole in memory); returns a digest of its content
    (names, modes, links, bytes: not the commit id)."""
    digest = hashlib.sha256()
    dest.mkdir(parents=True)
    tarpath = dest.parent / "context.tar"
    try:
        with open(tarpath, "wb") as fh:
            src.archive_to(fh)
        with tarfile.open(tarpath) as tar:
            for member in tar:
                if member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                    continue
                digest.update(f"{member.name}\0{member.type!r}\0{member.mode}\0{member.linkname}\0".encode())
                data = tar.extractfile(member) if member.isfile() else None
                while data is not None and (chunk := data.read(1 << 20)):
                    digest.update(chunk)
                buildfs.safe_extract(tar, member, dest)
    finally:
        tarpath.unlink(missing_ok=True)
    return digest.hexdigest()


def import_bases(settings: Settings, refs: list[BaseRef], out: Output) -> dict[str, str]:
    """Make every base image available in the shared base store; {written name: image id}."""
    ids: dict[str, str] = {}
    shared = base_store(settings)
    for ref in refs:
        found = engine.local_image_id(ref.engine_name)
        if found is None:
            raise BuildError(
                f"base image {ref.written} is not on this host: builds start from local images only"
                f" (the stack is {settings.stack_image})"
            )
        image_id = found if found.startswith("sha256:") else f"sha256:{found}"
        ids[ref.written] = image_id
        with _locked(home(settings) / "base.lock"):
            known = _bases_known(settings)
            if known.get(ref.store_name) == image_id or _store_id(shared, ref.store_name) == image_id[7:]:
                _remember_base(settings, known, ref.store_name, image_id)
                continue
            out.detail(f"Importing base image {ref.engine_name} ({image_id.removeprefix('sha256:')[:12]})")
            target = registry_name(settings.registry, ref, image_id)
            engine.publish(ref.engine_name, target, settings.registry_auth().auth_config())
            _run(
                buildah.pull(shared, target, buildah.RegistryAccess.of(settings.tls_dir)),
                f"importing {ref.engine_name}",
            )
            _run(buildah.tag(shared, target, ref.store_name), f"importing {ref.engine_name}")
            _remember_base(settings, known, ref.store_name, image_id)
    return ids


def preload(settings: Settings, name: str, out: Output) -> bool:
    """Import one base image ahead of any build (the stack, at bring-up); True if it was imported."""
    ref = base_ref(name, settings.registry)
    before = _bases_known(settings).get(ref.store_name)
    try:
        import_bases(settings, [ref], out)
    except BuildError:
        return False  # not on this host: the first build that names it says so
    return _bases_known(settings).get(ref.store_name) != before


def _bases_known(settings: Settings) -> dict[str, str]:
    """{store name: image id} the base store was seen to hold (saves a buildah call per build)."""
    try:
        known = json.loads((home(settings) / "bases.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def _remember_base(settings: Settings, known: dict[str, str], name: str, image_id: str) -> None:
    if known.get(name) != image_id:
        known[name] = image_id
        tmp = home(settings) / "bases.json.tmp"
        tmp.write_text(json.dumps(known))
        os.replace(tmp, home(settings) / "bases.json")


def _store_id(store: Store, name: str) -> str | None:
    try:
        return _run(buildah.image_id(store, name), "inspect").strip()
    except ServiceError:
        return None


def stream(argv: list[str], env: dict[str, str], out: Output, timeout: float) -> None:
    """Run the build, its output to the pusher line by line; BuildError with buildah's own error
    when it fails. Killed (its whole process group) at the deadline or when the pusher is gone."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ServiceError(f"{argv[0]} not found (install the buildah package)") from exc
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    pending, error = b"", None
    try:
        while True:
            if time.monotonic() > deadline:
                raise BuildError(f"the build took longer than {timeout:.0f}s (build_timeout) and was stopped")
            ready = _wait_readable(fd, 0.5)
            if not ready:
                out.poll()  # raises KeyboardInterrupt once the pusher hung up
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                shown, err = relay_line(raw)
                error = err or error
                if shown is not None:
                    out.detail(shown)
        code = proc.wait()
    finally:
        _stop(proc)
    if code != 0:
        raise BuildError(f"Dockerfile build failed: {error or f'buildah exited with status {code}'}")


def _wait_readable(fd: int, timeout: float) -> bool:
    import select

    return bool(select.select([fd], [], [], timeout)[0])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
                break
    # The leader may go first while the rest of its group (a RUN step's children) ignores or has not
    # yet acted on SIGTERM: the group id stays reserved while any member lives, so this is safe.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


# -- the build ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    work: Path
    context: Path
    dockerfile: Path
    args: dict[str, str]
    secrets: dict[str, str]
    key: str


def prepare(
    settings: Settings, src: source.Source, app: str, config: Mapping[str, str], work: Path, out: Output
) -> Prepared:
    """Everything before buildah runs: the context, the checked Dockerfile, bases, the inputs key."""
    context = work / "context"
    digest = extract(src, context)
    path = context / "Dockerfile"
    if path.is_symlink() or not path.is_file():
        raise BuildError("the Dockerfile must be a regular file at the top of the repository")
    text = dockerfile.sanitize(path.read_text(errors="replace"), context)
    args = build_args(config)
    refs = [base_ref(name, settings.registry) for name in dockerfile.base_images(text, args)]
    bases = import_bases(settings, refs, out)
    secrets = secret_values(config)
    ca = settings.build_ca_bundle
    ca_digest = hashlib.sha256(ca.read_bytes()).hexdigest() if ca and ca.is_file() else ""
    (work / "Dockerfile").write_text(text)
    key = inputs_key(digest, text, args, secrets, bases, ca_digest)
    return Prepared(work, context, work / "Dockerfile", args, secrets, key)


def reuse(settings: Settings, app: str, key: str) -> tuple[str, int | None] | None:
    """The app's last image when it was built from the same inputs and is still in the registry."""
    try:
        last = json.loads(last_file(settings, app).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(last, dict) or last.get("key") != key:
        return None
    try:
        image.image_config(settings, image.parse_reference(settings, str(last["image"])))
    except Exception:
        return None
    return str(last["image"]), last.get("port")


def build(
    settings: Settings, src: source.Source, app: str, tag: str, config: Mapping[str, str], out: Output
) -> tuple[str, int | None]:
    """Build the app's Dockerfile into `tag` in the platform registry; (image, exposed port)."""
    root = home(settings) / "work"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{app}-", dir=root))
    try:
        prep = prepare(settings, src, app, config, work, out)
        again = reuse(settings, app, prep.key)
        if again is not None:
            out.detail(f"Same Dockerfile, context, build args and base images as {again[0]}: reusing it")
            return again
        port = _build_and_push(settings, app, tag, prep, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = last_file(settings, app)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"key": prep.key, "image": tag, "port": port}))
    return tag, port


def _secret_files(settings: Settings, prep: Prepared) -> dict[str, Path]:
    files: dict[str, Path] = {}
    folder = prep.work / "secrets"
    folder.mkdir(mode=0o700)
    for name, value in prep.secrets.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(value.encode())
        files[name] = path
    ca = settings.build_ca_bundle
    if ca and ca.is_file():
        files[CA_SECRET] = ca
    return files


def _build_and_push(settings: Settings, app: str, tag: str, prep: Prepared, out: Output) -> int | None:
    store = app_store(settings, app)
    cache = cache_dir(settings, app)
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "TMPDIR": str(cache),
        "HOME": "/root",
    }
    started = time.monotonic()
    try:
        with (
            buildnet.isolated(settings.build_subnet) as link,
            buildcg.limited(link.name, settings.build_pids_limit) as cgroup,
        ):
            secrets = _secret_files(settings, prep)
            argv = buildah.bud(store, prep.context, prep.dockerfile, LOCAL_NAME, list(prep.args), secrets)
            argv[-1:-1] = buildah.limits(settings.build_memory, cgroup)
            stream(buildah.in_netns(link.path, argv), env | prep.args, out, settings.build_timeout)
    except BaseException:
        with contextlib.suppress(ServiceError):
            _run(buildah.remove_containers(store), "cleanup")
        raise
    out.detail(f"built in {time.monotonic() - started:.1f}s")
    out.step(f"Pushing image to {settings.registry}")
    started = time.monotonic()
    _run(
        buildah.push(store, LOCAL_NAME, tag, buildah.RegistryAccess.of(settings.tls_dir)),
        f"pushing {tag} to the registry",
    )
    out.detail(f"{tag} pushed in {time.monotonic() - started:.1f}s")
    engine.prefetch(tag, settings.registry_auth().auth_config())  # the rollout starts it next
    return image.exposed_port(image.image_config(settings, image.parse_reference(settings, tag)))


def purge_cache(settings: Settings, app: str) -> int:
    """Empty the app's RUN --mount=type=cache dirs and forget its last inputs; the bytes freed."""
    last_file(settings, app).unlink(missing_ok=True)
    path = cache_dir(settings, app)
    if not path.exists():
        return 0
    size = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(path, ignore_errors=True)
    return size


def forget(settings: Settings, app: str) -> None:
    """The app's store, cache and record (apps:destroy): the next owner of the name starts clean."""
    purge_cache(settings, app)
    store = app_store(settings, app)
    if store.root.exists():
        with contextlib.suppress(ServiceError):
            _run(buildah.remove_containers(store), "cleanup")
        shutil.rmtree(store.root, ignore_errors=True)
    shutil.rmtree(store.runroot, ignore_errors=True)
