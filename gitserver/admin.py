"""`deis`: the host-side admin command (run as root on the platform's host).

deis up [--state-dir DIR] [--ssh-port N] [--http-port N] [--domain D] ...   bring everything up
        [--build-ca-bundle FILE | --no-build-ca-bundle] [--build-env KEY=VALUE ... | --no-build-env]
        [--acme-directory URL] [--acme-email EMAIL] [--acme-ca-bundle FILE] [--acme-renew-days N]
deis down                                                                   stop what `up` started
deis status
deis keys:add NAME [--admin] < key.pub                                      register a user's key
deis keys:list | keys:remove NAME|FINGERPRINT | users:list
deis serve                                                                  the SSH appliance (foreground)
deis stacks:build [--force]                                                 (re)make the stack images
deis test-prereqs                                                 dockerd and the stack images, for tests
deis cloud-config NODE --role control|worker --engine swarm|fleet [--etcd-peers NAME=URL,...] ...
                                                      #cloud-config user-data for a cluster node
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Sequence

from appliance import cloudconfig, components, handover, processes, services
from core.errors import DeisError, ValidationError
from core.names import memory_bytes
from core.output import Output
from core.settings import Settings, check_ca_bundle, parse_build_env
from releaser import apps
from releaser.store import Store

ACME_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[!-~]*)?")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")


def appliance_service(settings: Settings) -> processes.Service:
    def ready() -> bool:
        host = "127.0.0.1" if settings.ssh_host in ("0.0.0.0", "::", "") else settings.ssh_host
        try:
            with socket.create_connection((host, settings.ssh_port), timeout=1):
                return True
        except OSError:
            return False

    return processes.Service(
        name="appliance",
        argv=[sys.executable, "-m", "gitserver.admin", "--state-dir", str(settings.state_dir), "serve"],
        ready=ready,
        address=f"{settings.ssh_host}:{settings.ssh_port}",
        package="deis-appliance",
    )


def apply_etcd_options(settings: Settings, args: argparse.Namespace) -> None:
    """`--etcd-name`, `--etcd-cluster`, `--etcd-endpoints`: checked first, so bad input changes nothing."""
    name, cluster, endpoints = (
        getattr(args, k, None) for k in ("etcd_name", "etcd_cluster", "etcd_endpoints")
    )
    if name is not None and not cloudconfig.NODE_NAME.fullmatch(name):
        raise ValidationError(f"--etcd-name is lowercase letters, digits and '-', not {name!r}")
    peers = cloudconfig.parse_peers(cluster) if cluster is not None else None
    if peers is not None and (name or settings.etcd_name) not in dict(peers):
        raise ValidationError(f"--etcd-cluster must name this member ({name or settings.etcd_name})")
    urls = [u.strip() for u in (endpoints or "").split(",") if u.strip()]
    for url in urls:
        if not cloudconfig.ENDPOINT.fullmatch(url):
            raise ValidationError(f"--etcd-endpoints items look like https://10.0.0.2:2379, not {url!r}")
    if name is not None:
        settings.etcd_name = name
    if peers is not None:
        settings.etcd_cluster = ",".join(f"{n}={u}" for n, u in peers)
    if endpoints is not None:
        settings.etcd_endpoints = ",".join(urls)


def cmd_up(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    for name in (
        "ssh_host",
        "ssh_port",
        "http_port",
        "https_port",
        "etcd_port",
        "etcd_peer_port",
        "registry_port",
        "domain",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, type(getattr(settings, name))(value))
    apply_etcd_options(settings, args)
    apply_build_options(settings, args)
    apply_drain_options(settings, args)
    apply_acme_options(settings, args)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.save()
    out.step(f"Bringing the platform up (state in {settings.state_dir})")
    # Before asking the engine whether an appliance runs: on a fresh or rebooted host none answers yet.
    services.ensure_dockerd(settings, out)
    upgrade = (
        contextlib.nullcontext()
        if not handover.appliance_running(settings)
        else (handover.upgrading(settings, out, lambda: handover.deploys_in_flight(running_store(settings))))
    )
    with upgrade:  # new sessions wait while etcd, the registry or the router may be replaced
        components.up(settings, out)
    seed_registry(settings, out)
    out.step(f"Starting the appliance (SSH, container) on port {settings.ssh_port}")
    handover.start_appliance(settings, out, appliance_service(settings))
    store = Store.of(settings)
    has_admin = any(u.admin for u in apps.list_users(store))
    out.step("The platform is up")
    port = settings.ssh_port
    if not has_admin:
        out.detail("register the first admin's key:  deis keys:add alice --admin < ~/.ssh/id_ed25519.pub")
    out.detail(
        f"deploy an app:   git remote add deis ssh://git@HOST:{port}/myapp.git && git push deis master"
    )
    out.detail(f"commands:        ssh -p {port} git@HOST help")
    out.detail(f"apps answer at:  {settings.app_url('APP')}")
    return 0


def running_store(settings: Settings) -> Store:
    """The etcd that runs now: before `up` moves an earlier platform's etcd to TLS, its plain http."""
    if services.etcd_answers_plain(settings):
        return Store(f"http://127.0.0.1:{settings.etcd_port}")
    return Store.of(settings)


def _bundle_option(settings: Settings, args: argparse.Namespace, name: str, what: str) -> None:
    """`--NAME FILE` sets the CA bundle setting NAME, `--no-NAME` clears it; bad input raises first."""
    given = getattr(args, name)
    bundle = check_ca_bundle(given, what) if given else None
    if getattr(args, f"no_{name}"):
        setattr(settings, name, None)
    elif bundle is not None:
        setattr(settings, name, bundle)


def apply_build_options(settings: Settings, args: argparse.Namespace) -> None:
    """`--build-ca-bundle FILE` / `--no-build-ca-bundle`, `--build-env KEY=VALUE` (repeatable: the
    list given replaces the saved one) / `--no-build-env`, `--build-memory SIZE`, `--build-pids N`.
    Bad input changes nothing."""
    memory = memory_bytes(args.build_memory) if getattr(args, "build_memory", None) else None
    pids = getattr(args, "build_pids", None)
    if memory is not None and memory < (64 << 20):
        raise ValidationError(f"--build-memory {args.build_memory} is too small: at least 64M")
    if pids is not None and pids < 64:
        raise ValidationError(f"--build-pids {pids} is too small: at least 64")
    try:
        env = parse_build_env(args.build_env or [])
        _bundle_option(settings, args, "build_ca_bundle", "build")
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    if args.no_build_env:
        settings.build_env = ()
    elif args.build_env:
        settings.build_env = env
    if memory is not None:
        settings.build_memory = memory
    if pids is not None:
        settings.build_pids_limit = pids


def apply_drain_options(settings: Settings, args: argparse.Namespace) -> None:
    """`--drain-ca-bundle FILE` / `--no-drain-ca-bundle`. Bad input changes nothing."""
    try:
        _bundle_option(settings, args, "drain_ca_bundle", "drain")
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def apply_acme_options(settings: Settings, args: argparse.Namespace) -> None:
    """`--acme-directory URL`, `--acme-email EMAIL`, `--acme-ca-bundle FILE` / `--no-acme-ca-bundle`,
    `--acme-renew-days N`. Bad input changes nothing."""
    directory, email = args.acme_directory, args.acme_email
    if directory is not None and not ACME_URL.fullmatch(directory):
        raise ValidationError(f"--acme-directory must be an https:// URL, not {directory!r}")
    if email is not None and email != "" and not EMAIL.fullmatch(email):
        raise ValidationError(f"--acme-email must be an address like ops@example.com, not {email!r}")
    days = args.acme_renew_days
    if days is not None and not 0 < days <= 365:
        raise ValidationError("--acme-renew-days must be between 1 and 365")
    try:
        _bundle_option(settings, args, "acme_ca_bundle", "ACME")  # the last check: it sets on success
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    if directory is not None:
        settings.acme_directory = directory
    if email is not None:
        settings.acme_email = email
    if days is not None:
        settings.acme_renew_before = days * 86400.0


def seed_registry(settings: Settings, out: Output) -> None:
    """Put the base images of every app image (the stack, the slug runner) in the registry once, so
    an app's push uploads only its own layers."""
    from builders import dockerbuild, engine, stacks

    for image in (settings.stack_image, stacks.RUNNER_IMAGE):
        started = time.monotonic()
        if engine.seed_registry(image, settings.registry, settings.registry_auth().auth_config()):
            out.step(f"Seeded the registry with {image} ({time.monotonic() - started:.1f}s)")
    if settings.dockerfile_builder == "buildah" and shutil.which("buildah"):
        # The stack into the Dockerfile builds' base store now, not during an app's first push.
        started = time.monotonic()
        if dockerbuild.preload(settings, settings.stack_image, out):
            out.detail(f"ready for Dockerfile builds in {time.monotonic() - started:.1f}s")


def cmd_down(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    out.step("Stopping the platform (apps' containers keep their restart policy)")
    # No engine answering means no component's container runs (after a reboot, or a down twice):
    # only loose processes of an earlier layout can be left to stop.
    engine = services.docker_answers()
    if engine:
        handover.stop_appliance(settings, out)
    processes.stop(appliance_service(settings), settings, out)  # one an earlier layout started
    components.down(settings, out, engine=engine)
    out.step("The platform is down")
    return 0


def _uptime(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


def component_lines(settings: Settings) -> list[tuple[str, bool, str]]:
    """(name, running, what) of each part: processes by pidfile, components by their container."""
    rows = [("dockerd", services.docker_answers(), "process")]
    for name in components.COMPONENTS:
        container = components.container_name(settings, name)
        try:
            st = services.component_state(container) if rows[0][1] else None
        except DeisError:
            st = None
        if st is None:
            rows.append((name, False, f"container {container}: missing"))
            continue
        up = _uptime(time.time() - st.started) if st.state == "running" else "-"
        rows.append((name, st.state == "running", f"container {container}: up {up}, restarts {st.restarts}"))
    return rows


def cmd_status(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    rows = component_lines(settings)
    for name, ok, what in rows:
        out.line(f"{name:10} {'running' if ok else 'stopped':8} {what}")
    return 0 if all(ok for _, ok, _ in rows) else 1


def cmd_serve(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from appliance import acme, backups, collector, metrics, reconciler
    from appliance.platform import Platform
    from gitserver.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings.harden()  # a state dir made by an older platform gets the permissions it should have
    if os.environ.get(components.INSTANCE_ENV):  # in its container: the engine cannot mount its files
        from builders import builderfiles

        builderfiles.publish_files(settings)
    platform = Platform.from_settings(settings)  # the one this process shares: commands, hooks, reconciler
    # The collector first: it must hear of every container the reconciler removes.
    stop_logs = collector.start_thread(platform)
    stop_metrics = metrics.start_thread(platform)
    stop = reconciler.start_thread(platform)
    stop_acme = acme.start_thread(platform)
    stop_backups = backups.start_thread(platform)
    try:
        # A replacement stops the reconciler at once (the new appliance has its own), then finishes
        # the sessions in flight (appliance.handover).
        asyncio.run(serve(platform, on_listening=lambda: mark_ready(settings), on_stop=stop.set))
    finally:
        stop_acme.set()
        platform.acme_wake.set()
        stop.set()
        stop_backups.set()
        stop_logs.set()
        stop_metrics.set()
        platform.logs.close()  # what is buffered goes to disk
    return 0


def mark_ready(settings: Settings) -> None:
    """Tell `deis up` which start of the appliance now listens (its container's instance id)."""
    instance = os.environ.get(components.INSTANCE_ENV)
    if instance:
        tmp = settings.appliance_ready.with_suffix(".tmp")
        tmp.write_text(instance + "\n")
        os.replace(tmp, settings.appliance_ready)


def cmd_keys_add(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    store = Store.of(settings)
    apps.ensure_user(store, args.user, admin=args.admin)
    fp = apps.add_key(store, args.user, sys.stdin.read())
    out.step(f"key {fp} added for {args.user}{' (admin)' if args.admin else ''}")
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    for key in apps.list_keys(Store.of(settings), args.user):
        out.line(f"{key['user']}  {key['name']}  {key['fingerprint']}")
    return 0


def cmd_keys_remove(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    fp = apps.remove_key(Store.of(settings), None, args.key)
    out.step(f"key {fp} removed")
    return 0


def cmd_users_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    for user in apps.list_users(Store.of(settings)):
        out.line(f"{user.name}{'  (admin)' if user.admin else ''}")
    return 0


def cmd_stacks_build(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from builders import stacks

    services.ensure_dockerd(settings, out)
    stacks.ensure_all(settings, out, force=args.force)
    out.step("Stack images ready" + ("" if args.force else " (--force remakes them)"))
    for image in (settings.stack_image, stacks.RUNNER_IMAGE, stacks.BUILDER_IMAGE):
        out.detail(image)
    return 0


def cmd_test_prereqs(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """What the test suite shares with the host: a docker daemon that answers and the stack images."""
    from builders import components as builders_components
    from builders import stacks

    services.ensure_dockerd(settings, out)
    stacks.ensure_all(settings, out, extra=builders_components.specs())  # the appliance runs in one
    return 0


def cmd_cloud_config(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from appliance import cloudconfig

    spec = cloudconfig.NodeSpec(
        name=args.node,
        role=args.role,
        engine=args.engine,
        etcd_peers=cloudconfig.parse_peers(args.etcd_peers or ""),
        registry=args.registry or "",
        metadata=cloudconfig.parse_metadata(args.metadata or []),
        swarm_manager=args.swarm_manager or "",
        swarm_token=args.swarm_token or "",
        appliance_image=args.appliance_image,
    )
    sys.stdout.write(cloudconfig.render(spec))
    return 0


def add_cloud_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cc = sub.add_parser("cloud-config", help="print #cloud-config user-data for a CoreOS/Flatcar node")
    cc.add_argument("node", help="the node's name (its hostname and etcd member name)")
    cc.add_argument("--role", required=True, choices=["control", "worker"])
    cc.add_argument("--engine", required=True, choices=["swarm", "fleet"])
    cc.add_argument("--etcd-peers", metavar="NAME=URL,...", help="the control nodes' etcd peer URLs")
    cc.add_argument(
        "--registry", metavar="HOST:PORT", help="the platform registry (default: this control node)"
    )
    cc.add_argument("--metadata", metavar="KEY=VALUE", action="append", help="fleet metadata / engine label")
    cc.add_argument("--swarm-manager", metavar="HOST:PORT", help="a manager to join (default: init a swarm)")
    cc.add_argument("--swarm-token", metavar="TOKEN", help="`docker swarm join-token -q worker|manager`")
    cc.add_argument(
        "--appliance-image", default="deis/appliance:latest", help="the appliance's image on the node"
    )
    cc.set_defaults(func=cmd_cloud_config)


def add_setting_arguments(up: argparse.ArgumentParser) -> None:
    """`deis up`'s build, drain and ACME settings."""
    up.add_argument(
        "--build-ca-bundle",
        metavar="FILE",
        help="PEM bundle every build trusts (default: /etc/ssl/certs/ca-certificates.crt when present)",
    )
    up.add_argument("--no-build-ca-bundle", action="store_true", help="builds trust only the stack's CAs")
    up.add_argument(
        "--build-env",
        metavar="KEY=VALUE",
        action="append",
        help="a variable every build sees (repeatable; mirrors, proxies); app config vars override it",
    )
    up.add_argument("--no-build-env", action="store_true", help="forget the saved --build-env values")
    up.add_argument("--build-memory", metavar="SIZE", help="memory one build may use, like 2G (default 2G)")
    up.add_argument(
        "--build-pids", metavar="N", type=int, help="processes one build may run at once (default 1024)"
    )
    up.add_argument(
        "--drain-ca-bundle",
        metavar="FILE",
        help="PEM bundle TLS log drains are also trusted by (beside the system's CAs)",
    )
    up.add_argument(
        "--no-drain-ca-bundle", action="store_true", help="TLS drains trust the system's CAs only"
    )
    up.add_argument(
        "--acme-directory",
        metavar="URL",
        help="ACME directory for certs:auto (default: Let's Encrypt's production one)",
    )
    up.add_argument("--acme-email", metavar="EMAIL", help="contact address of the platform's ACME account")
    up.add_argument(
        "--acme-ca-bundle", metavar="FILE", help="PEM bundle that signs the ACME server's HTTPS (a test CA)"
    )
    up.add_argument("--no-acme-ca-bundle", action="store_true", help="trust the system's CAs for ACME")
    up.add_argument(
        "--acme-renew-days",
        type=int,
        metavar="N",
        help="renew automatic certificates N days before expiry (30)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deis", description="Host-side administration of the platform.")
    p.add_argument(
        "--state-dir", help="the platform's state directory (default /var/lib/deis or $DEIS_STATE_DIR)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install nothing, start everything (see ./platform up)")
    up.add_argument("--ssh-host", dest="ssh_host")
    up.add_argument("--ssh-port", dest="ssh_port", type=int)
    up.add_argument("--http-port", dest="http_port", type=int)
    up.add_argument("--https-port", dest="https_port", type=int)
    up.add_argument("--etcd-port", dest="etcd_port", type=int)
    up.add_argument("--etcd-peer-port", dest="etcd_peer_port", type=int)
    up.add_argument("--registry-port", dest="registry_port", type=int)
    up.add_argument("--etcd-name", metavar="NAME", help="this host's etcd member name (default deis)")
    up.add_argument(
        "--etcd-cluster",
        metavar="NAME=PEER_URL,...",
        help="etcd's initial cluster (default: this member alone)",
    )
    up.add_argument(
        "--etcd-endpoints",
        metavar="URL,...",
        help="every member's client URL: the store fails over between them",
    )
    up.add_argument("--domain")
    add_setting_arguments(up)
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what up started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="which parts run").set_defaults(func=cmd_status)
    sub.add_parser("serve", help="run the SSH appliance in the foreground").set_defaults(func=cmd_serve)
    ka = sub.add_parser("keys:add", help="register a public key (on stdin) for a user")
    ka.add_argument("user")
    ka.add_argument("--admin", action="store_true")
    ka.set_defaults(func=cmd_keys_add)
    kl = sub.add_parser("keys:list", help="list keys")
    kl.add_argument("user", nargs="?")
    kl.set_defaults(func=cmd_keys_list)
    kr = sub.add_parser("keys:remove", help="remove a key by name or fingerprint")
    kr.add_argument("key")
    kr.set_defaults(func=cmd_keys_remove)
    sub.add_parser("users:list", help="list users").set_defaults(func=cmd_users_list)
    sb = sub.add_parser("stacks:build", help="make the stack, slugbuilder and slugrunner images if missing")
    sb.add_argument("--force", action="store_true", help="remake them even if present")
    sb.set_defaults(func=cmd_stacks_build)
    sub.add_parser(
        "test-prereqs", help="start dockerd if none answers and make the stack images (./platform test)"
    ).set_defaults(func=cmd_test_prereqs)
    add_cloud_config(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings.load(args.state_dir)
    out = Output(sys.stdout)
    try:
        return int(args.func(settings, args, out) or 0)
    except DeisError as exc:
        out.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
