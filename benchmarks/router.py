"""Router benchmarks, each beside its baseline measured in the same run. 127.0.0.1 only, bounded.

    python benchmarks/router.py [--seconds 1] [--rounds 6] [--connections 16] [--procs 1] [--apps 10,100,1000]
    python benchmarks/router.py --policy [--fresh 200]      # part 3 alone
    python benchmarks/router.py --log-cost                  # part 4 alone

1. Proxy overhead: requests/s and p99 latency of a small response (GET /, 6 bytes) through the
   router's nginx vs straight to the backend, same client, same backend. Two backends: a small
   asyncio HTTP/1.1 server in Python (what apps on this platform look like) and a second nginx
   (`return 200`: a fast backend, where the proxy's own cost shows most).
   Target: through the router >= 85% of direct.
2. Publish time with N apps: render one app's block + `nginx -t` of the candidate + reload +
   wait for the new workers (Router.publish), with 10, 100 and 1,000 apps live; also with every
   app holding its own certificate; and, for comparison, `nginx -t` of the whole config (what
   checking each candidate among all the others costs). Target: <= 0.5 s at 1,000 apps.

3. Upstream connection policy (`--policy`): two apps in a network namespace behind a veth (as app
   containers sit behind their bridge): Python's `http.server` with HTTP/1.1 (head and body in two
   writes, Nagle on) and the asyncio server (TCP_NODELAY, as asyncio sets it). For each: p50/p99 of
   requests on fresh client connections and requests/s of kept-alive clients, direct and through
   the router with pooled upstream connections (keepalive), pooled plus `quickack` on the route to
   the apps (what scheduler.quickack does to the app network's route), and a fresh upstream
   connection per request (no keepalive). Target: the router adds <= 1 ms p50 for both apps and
   keeps the nodelay app's requests/s.
4. Access log cost (`--log-cost`): the fast backend through the router with the metrics' buffered
   per-app access log, the unbuffered combined-format line it wrote before, and no log at all.
   Target: the metrics' log costs <= 5 % of the router's requests/s.

The client is Python (asyncio, keep-alive, several processes); on a small machine it is often the
bottleneck, which the report says when direct and proxied are both capped by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import proc
from core.settings import Settings
from routerconf import Router, tls
from routerconf.render import render_app
from routerconf.site import Site
from scheduler import quickack

BODY = b"hello\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- backends ----------------------------------------------------------------------------------------
def _python_backend(port: int, host: str = "127.0.0.1") -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n" + BODY
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(response)
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, host, port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _nagle_backend(host: str, port: int) -> None:
    """Python's http.server speaking HTTP/1.1: head and body in two writes, Nagle on."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()


def start_python_backend() -> tuple[int, mp.Process]:
    port = free_port()
    proc = mp.Process(target=_python_backend, args=(port,), daemon=True)
    proc.start()
    _wait_port(port)
    return port, proc


def start_nginx_backend(root: Path) -> tuple[int, int]:
    """A second nginx answering `hello` on a free port; returns (port, master pid)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        "daemon on; worker_processes 1; pid nginx.pid; error_log logs/error.log;\n"
        "events { worker_connections 1024; }\n"
        "http { access_log off; client_body_temp_path logs; proxy_temp_path logs;\n"
        "  fastcgi_temp_path logs; uwsgi_temp_path logs; scgi_temp_path logs;\n"
        f"  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;\n"
        '    location / { default_type text/plain; return 200 "hello\\n"; } } }\n'
    )
    subprocess.run(["/usr/sbin/nginx", "-c", str(conf), "-p", f"{root}/"], check=True)
    _wait_port(port)
    return port, int((root / "nginx.pid").read_text())


def _wait_port(port: int, timeout: float = 10, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- the client --------------------------------------------------------------------------------------
async def _client(
    port: int, host: str, connections: int, seconds: float, addr: str = "127.0.0.1"
) -> tuple[int, list[float]]:
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(addr, port)
        try:
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    # the server closed a kept-alive connection (nginx: keepalive_requests): reconnect
                    writer.close()
                    reader, writer = await asyncio.open_connection(addr, port)
                    continue
                length, close = 0, False
                for line in head.split(b"\r\n"):
                    name = line.partition(b":")[0].lower()
                    if name == b"content-length":
                        length = int(line.partition(b":")[2])
                    elif name == b"connection" and b"close" in line.lower():
                        close = True
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                if not head.startswith(b"HTTP/1.1 200") or body != BODY:
                    errors += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(addr, port)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return errors, latencies


def _client_proc(port: int, host: str, connections: int, seconds: float, q: mp.Queue, addr: str) -> None:
    q.put(asyncio.run(_client(port, host, connections, seconds, addr)))


def load(
    port: int, host: str, connections: int, seconds: float, procs: int, addr: str = "127.0.0.1"
) -> tuple[float, float, int]:
    """(requests/s, p99 ms, errors) with `procs` client processes sharing `connections`."""
    q: mp.Queue = mp.Queue()
    per = max(1, connections // procs)
    workers = [
        mp.Process(target=_client_proc, args=(port, host, per, seconds, q, addr)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    results = [q.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join(10)
    lat = sorted(x for _, ls in results for x in ls)
    errors = sum(e for e, _ in results)
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    return len(lat) / seconds, p99, errors


# -- part 1 ------------------------------------------------------------------------------------------
def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time of `pids` so far (from /proc; a gone process counts 0)."""
    total = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of the full line)
    return total / os.sysconf("SC_CLK_TCK")


def proxy_overhead(args: argparse.Namespace, root: Path) -> None:
    settings = Settings(state_dir=root / "proxy", http_port=free_port(), https_port=free_port())
    router = Router(settings)
    py_port, py_proc = start_python_backend()
    ng_port, ng_pid = start_nginx_backend(root / "backend-nginx")
    try:
        router.start()
        router.publish("py", [f"127.0.0.1:{py_port}"])
        router.publish("ng", [f"127.0.0.1:{ng_port}"])
        print(
            f"proxy overhead: {args.rounds} x {args.seconds:.1f} s per side, {args.connections} connections,"
            f" {args.procs} client procs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        backend_pids = {"py": {py_proc.pid or 0}, "ng": proc.children(ng_pid)}
        router_pid = router._pid()
        assert router_pid is not None
        for name, app, port in (("python backend", "py", py_port), ("nginx backend", "ng", ng_port)):
            # The CPU each side spends per request does not depend on how busy the machine is.
            cpu = {"router": 0.0, "backend": 0.0}
            count = 0
            targets = {"direct": (port, "x"), "router": (settings.http_port, f"{app}.localhost")}
            for p, host in targets.values():  # warm up
                load(p, host, args.connections, 0.5, args.procs)
            # Interleaved short rounds, so both sides see the same background load (a shared machine).
            runs: dict[str, list[tuple[float, float, int]]] = {"direct": [], "router": []}
            for k in range(args.rounds):
                for label in ("direct", "router") if k % 2 == 0 else ("router", "direct"):
                    p, host = targets[label]
                    workers = proc.children(router_pid)
                    before = cpu_seconds(workers), cpu_seconds(backend_pids[app])
                    result = load(p, host, args.connections, args.seconds, args.procs)
                    runs[label].append(result)
                    if label == "router":
                        cpu["router"] += cpu_seconds(workers) - before[0]
                        cpu["backend"] += cpu_seconds(backend_pids[app]) - before[1]
                        count += int(result[0] * args.seconds)
            print(f"  {name}:")
            medians = {}
            for label, rs in runs.items():
                medians[label] = statistics.median(r[0] for r in rs)
                p99 = statistics.median(r[1] for r in rs)
                errors = sum(r[2] for r in rs)
                print(
                    f"    {label:7} {medians[label]:7.0f} req/s (median of {len(rs)}; "
                    f"{min(r[0] for r in rs):.0f}-{max(r[0] for r in rs):.0f})   p99 {p99:6.2f} ms   "
                    f"errors {errors}"
                )
            ratio = medians["router"] / medians["direct"] * 100
            print(f"    router/direct: {ratio:.0f}% of requests/s (target >= 85%)")
            print(
                f"    CPU per request through the router: nginx {cpu['router'] / count * 1e6:.0f} us,"
                f" backend {cpu['backend'] / count * 1e6:.0f} us (over {count} requests)"
            )
    finally:
        router.stop()
        py_proc.terminate()
        py_proc.join(5)
        os.kill(ng_pid, signal.SIGQUIT)


# -- part 2 ------------------------------------------------------------------------------------------
def _timed(f: Callable[..., object], into: list[float]) -> Callable[..., object]:
    def timed(*a: object, **k: object) -> object:
        t0 = time.monotonic()
        try:
            return f(*a, **k)
        finally:
            into.append(time.monotonic() - t0)

    return timed


def publish_times(n: int, root: Path, with_certs: bool, repeat: int = 5) -> dict[str, float]:
    settings = Settings(
        state_dir=root / f"apps-{n}-{int(with_certs)}", http_port=free_port(), https_port=free_port()
    )
    router = Router(settings)
    router.start()
    try:
        cert = tls.self_signed("example.com") if with_certs else None
        t = time.monotonic()
        for i in range(n):
            site = Site(domains=(f"a{i}.example.com",), cert=cert)
            if cert is not None:
                router._write_cert(f"a{i}", cert)
            text = render_app(
                f"a{i}", settings.domain, [f"127.0.0.1:{20000 + i % 1000}"], settings.http_port,
                https_port=settings.https_port, site=site,
            )  # fmt: skip
            (router.apps_dir / f"a{i}.conf").write_text(text)
        render_all = time.monotonic() - t
        router.reload()
        spent: dict[str, list[float]] = {"_install": [], "_reload": []}
        for name, bucket in spent.items():  # time the two parts of each publish: check, reload
            setattr(router, name, _timed(getattr(router, name), bucket))
        times = []
        for k in range(repeat):
            site = Site(domains=("a0.example.com",), cert=cert, options={"read_timeout": f"{60 + k}s"})
            t = time.monotonic()
            router.publish("a0", [f"127.0.0.1:{30000 + k}"], site)
            times.append(time.monotonic() - t)
        t = time.monotonic()
        router._test(router.conf, label="nginx.conf")
        whole = time.monotonic() - t
        return {
            "median": statistics.median(times),
            "max": max(times),
            "check": statistics.median(spent["_install"]),
            "reload": statistics.median(spent["_reload"]),
            "whole_t": whole,
            "render_all": render_all,
        }
    finally:
        router.stop()


# -- part 3 ------------------------------------------------------------------------------------------
NS_NET = "10.254.77"  # a /30 for the benchmark's veth: host .1, the apps' namespace .2


@contextlib.contextmanager
def app_namespace() -> Iterator[tuple[str, str]]:
    """(namespace, host-side veth) with the apps' address NS_NET.2 reachable from the host."""
    ns, host_if, ns_if = f"deisbench{os.getpid()}", f"dbh{os.getpid()}"[:15], f"dbn{os.getpid()}"[:15]
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        ["ip", "link", "set", ns_if, "netns", ns],
        ["ip", "addr", "add", f"{NS_NET}.1/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", ns, "addr", "add", f"{NS_NET}.2/30", "dev", ns_if],
        ["ip", "-n", ns, "link", "set", ns_if, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    try:
        for argv in steps:
            subprocess.run(argv, check=True, capture_output=True)
        yield ns, host_if
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def set_quickack(host_if: str, on: bool) -> None:
    route = {"dst": f"{NS_NET}.0/30", "scope": "link", "prefsrc": f"{NS_NET}.1"}
    argv = quickack.change_argv(route, host_if)
    subprocess.run([*argv[:-1], "1" if on else "0"], check=True, capture_output=True)


def fresh_latency(addr: str, port: int, host: str, n: int) -> tuple[float, float]:
    """(p50, p99) ms of `n` requests, each on a new client connection."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with socket.create_connection((addr, port), timeout=5) as c:
            c.sendall(request)
            while c.recv(65536):
                pass
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2], times[max(0, int(len(times) * 0.99) - 1)]


POLICIES = ["direct", "keepalive", "keepalive+quickack", "no keepalive"]


def use_policy(router: Router, host_if: str, app: str, endpoint: str, policy: str) -> tuple[str, int, str]:
    """Set the route and the app's upstream for `policy`; (address, port, Host) to send requests to."""
    set_quickack(host_if, policy == "keepalive+quickack")
    if policy == "direct":
        addr, _, port = endpoint.partition(":")
        return addr, int(port), "x"
    router.publish(app, [endpoint])
    if policy == "no keepalive":
        conf = router.apps_dir / f"{app}.conf"
        conf.write_text(conf.read_text().replace("    keepalive 64;\n", ""))
        router.reload()
    return "127.0.0.1", router.settings.http_port, f"{app}.localhost"


def upstream_policy(args: argparse.Namespace, root: Path) -> None:
    settings = Settings(state_dir=root / "policy", http_port=free_port(), https_port=free_port())
    router = Router(settings)
    addr = f"{NS_NET}.2"
    with app_namespace() as (ns, host_if):
        ports = {"nagle": free_port(), "nodelay": free_port()}
        me = [sys.executable, str(Path(__file__).resolve())]
        backends = [
            subprocess.Popen(["ip", "netns", "exec", ns, *me, "--serve", kind, "--serve-port", str(port)])
            for kind, port in ports.items()
        ]
        try:
            for port in ports.values():
                _wait_port(port, host=addr)
            router.start()
            print(
                f"upstream policy: apps behind a veth; {args.fresh} fresh-connection requests, then"
                f" {args.connections} kept-alive connections for {args.seconds:.1f} s"
                f" x {args.rounds} per cell;"
                f" load average {os.getloadavg()[0]:.1f}"
            )
            print(f"  {'app':8} {'path':22} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>8}")
            for app, port in ports.items():
                lat: dict[str, tuple[float, float]] = {}
                rps: dict[str, list[float]] = {policy: [] for policy in POLICIES}
                for k in range(args.rounds):  # interleaved rounds: each policy sees the same background load
                    for policy in POLICIES[k % 4 :] + POLICIES[: k % 4]:
                        target = use_policy(router, host_if, app, f"{addr}:{port}", policy)
                        if k == 0:
                            fresh_latency(*target, n=20)  # warm up
                            lat[policy] = fresh_latency(*target, n=args.fresh)
                        rps[policy].append(
                            load(target[1], target[2], args.connections, args.seconds, args.procs, target[0])[
                                0
                            ]
                        )
                med = {policy: statistics.median(v) for policy, v in rps.items()}
                for policy in POLICIES:
                    p50, p99 = lat[policy]
                    print(f"  {app:8} {policy:22} {p50:7.2f} {p99:7.2f} {med[policy]:8.0f}")
                added = lat[POLICIES[2]][0] - lat["direct"][0]
                print(
                    f"  {app:8} with quickack the router adds {added:+.2f} ms p50;"
                    f" req/s {med[POLICIES[2]] / med['keepalive'] * 100:.0f}% of keepalive without it,"
                    f" {med[POLICIES[2]] / med['direct'] * 100:.0f}% of direct"
                )
        finally:
            router.stop()
            for b in backends:
                b.terminate()
                b.wait(10)


# -- part 4 ------------------------------------------------------------------------------------------
LOG_VARIANTS = {
    "metrics (buffered)": None,  # what render_app writes
    "combined, unbuffered": "    access_log logs/{app}.access.log deis;\n",  # what it wrote before
    "off": "    access_log off;\n",
}


def access_log_cost(args: argparse.Namespace, root: Path) -> None:
    """Requests/s through the router to the fast (nginx) backend with each access log, interleaved."""
    settings = Settings(state_dir=root / "logcost", http_port=free_port(), https_port=free_port())
    router = Router(settings)
    port, pid = start_nginx_backend(root / "logcost-backend")
    try:
        router.start()
        rps: dict[str, list[float]] = {v: [] for v in LOG_VARIANTS}
        for k in range(args.rounds):
            names = list(LOG_VARIANTS)
            for variant in names[k % 3 :] + names[: k % 3]:
                router.publish("ng", [f"127.0.0.1:{port}"])
                line = LOG_VARIANTS[variant]
                if line is not None:
                    conf = router.apps_dir / "ng.conf"
                    text = "".join(
                        line.format(app="ng") if "access_log" in x else x
                        for x in conf.read_text().splitlines(keepends=True)
                    )
                    conf.write_text(text)
                    router.reload()
                load(settings.http_port, "ng.localhost", args.connections, 0.3, args.procs)  # warm up
                rps[variant].append(
                    load(settings.http_port, "ng.localhost", args.connections, args.seconds, args.procs)[0]
                )
        print(
            f"access log cost: nginx backend through the router, {args.rounds} interleaved rounds of"
            f" {args.seconds:.1f} s; load average {os.getloadavg()[0]:.1f}"
        )
        off = statistics.median(rps["off"])
        for variant, values in rps.items():
            med = statistics.median(values)
            spread = f"{min(values):.0f}-{max(values):.0f}"
            print(f"  {variant:22} {med:8.0f} req/s (median; {spread})  {med / off * 100:5.1f}% of off")
    finally:
        router.stop()
        os.kill(pid, signal.SIGQUIT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="one round on one side")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--apps", default="10,100,1000")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--policy", action="store_true", help="only part 3 (needs root: a network namespace)")
    p.add_argument("--log-cost", action="store_true", help="only part 4: what the access log costs")
    p.add_argument("--fresh", type=int, default=200, help="part 3: fresh-connection requests per cell")
    p.add_argument("--serve", choices=("nagle", "nodelay"), help=argparse.SUPPRESS)  # part 3's apps
    p.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        host = f"{NS_NET}.2"
        _nagle_backend(host, args.serve_port) if args.serve == "nagle" else _python_backend(
            args.serve_port, host
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="deis-bench-router-") as tmp:
        root = Path(tmp)
        if args.policy:
            upstream_policy(args, root)
            return 0
        if args.log_cost:
            access_log_cost(args, root)
            return 0
        if not args.skip_load:
            proxy_overhead(args, root)
        print("publish one app (render + nginx -t of the candidate + reload + new workers), 5 runs:")
        for with_certs in (False, True):
            for n in (int(x) for x in args.apps.split(",")):
                r = publish_times(n, root, with_certs)
                print(
                    f"  {n:5} apps{' (each with a certificate)' if with_certs else ' ' * 26}"
                    f"  publish median {r['median']:.3f} s, max {r['max']:.3f} s"
                    f" (check {r['check']:.3f} + reload {r['reload']:.3f})"
                    f"   | nginx -t of the whole config {r['whole_t']:.3f} s"
                    f"   | render all {r['render_all']:.2f} s"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
