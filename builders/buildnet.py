"""A network namespace of its own for every Dockerfile build: what a `RUN` step or an `ADD <url>` can
reach. The argv builders are pure (tests compare them); `isolated()` runs them.

    host ── dbhN (10.213.x.1/30) ══ veth ══ dbnN (10.213.x.2/30, default route) ── netns deis-build-N
                                                                                  buildah, RUN, ADD

The namespace reaches the internet through NAT (MASQUERADE), as a container on the docker bridge
does (here the host reaches PyPI and npm directly, through a transparent TLS-intercepting proxy:
no proxy variable to pass on). Everything else is refused (REJECT, so a build fails at once
instead of hanging): the host itself (INPUT from dbhN: every host address, and the host's loopback
is not reachable from another namespace at all), docker's bridges, the private, link-local,
shared and multicast ranges and the host's own subnets (FORWARD, in DOCKER-USER when docker made
it, so docker's own rules cannot come first), and new connections into the namespace. The one
exception is DNS (port 53) to the nameservers of /etc/resolv.conf. IPv6 is off on the host side
of the link, so there is no link-local way to the host either.

If the outside world were reachable only through a proxy on the host's loopback, a build could not
reach it (loopback is per namespace): the operator would run the proxy on an address of its own and
open just that address and port here, like the nameserver.
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from core.errors import ServiceError

IP = "ip"
IPTABLES = "iptables"
NETNS_DIR = Path("/run/netns")
# Where a build may never connect (besides the host itself and docker's bridges).
BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)

Rule = tuple[str, str, list[str]]  # (table, chain, match and target)


@dataclass(frozen=True)
class Link:
    index: int
    subnet: str  # the range all builds share (settings.build_subnet)

    @property
    def name(self) -> str:
        return f"deis-build-{self.index}"

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def host_if(self) -> str:
        return f"dbh{self.index}"

    @property
    def ns_if(self) -> str:
        return f"dbn{self.index}"

    def _address(self, offset: int) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + 4 * self.index + offset)

    @property
    def cidr(self) -> str:
        return f"{self._address(0)}/30"

    @property
    def host_ip(self) -> str:
        return self._address(1)

    @property
    def ns_ip(self) -> str:
        return self._address(2)


def slots(subnet: str) -> int:
    return int(ipaddress.ip_network(subnet).num_addresses // 4)


def nameservers(resolv_conf: str) -> list[str]:
    """IPv4 nameservers a build may ask (loopback ones are unreachable from its namespace anyway)."""
    found = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            with suppress(ValueError):
                addr = ipaddress.ip_address(words[1])
                if addr.version == 4 and not addr.is_loopback:
                    found.append(str(addr))
    return found


def host_networks(ip_addr_output: str) -> list[str]:
    """The host's own IPv4 subnets (from `ip -4 -o addr show`) not already in BLOCKED."""
    blocked = [ipaddress.IPv4Network(b) for b in BLOCKED]
    found: list[str] = []
    for line in ip_addr_output.splitlines():
        words = line.split()
        if "inet" not in words:
            continue
        net = ipaddress.IPv4Interface(words[words.index("inet") + 1]).network
        if not any(net.subnet_of(b) for b in blocked) and str(net) not in found:
            found.append(str(net))
    return found


def rules(link: Link, dns: Sequence[str], host_nets: Sequence[str], forward: str) -> list[Rule]:
    """The filter and NAT rules of one build link, in the order they must match."""
    h = link.host_if
    fwd: list[list[str]] = [
        ["-o", h, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-o", h, "-j", "REJECT"],
    ]
    for ns in dns:
        fwd += [
            ["-i", h, "-d", f"{ns}/32", "-p", proto, "--dport", "53", "-j", "ACCEPT"]
            for proto in ("udp", "tcp")
        ]
    fwd += [["-i", h, "-o", bridge, "-j", "REJECT"] for bridge in ("docker+", "br-+")]
    fwd += [["-i", h, "-d", net, "-j", "REJECT"] for net in (*BLOCKED, *host_nets)]
    fwd.append(["-i", h, "-j", "ACCEPT"])
    return [
        ("filter", "INPUT", ["-i", h, "-j", "REJECT"]),
        *(("filter", forward, spec) for spec in fwd),
        ("nat", "POSTROUTING", ["-s", link.cidr, "-j", "MASQUERADE"]),
    ]


def add_netns(link: Link) -> list[str]:
    return [IP, "netns", "add", link.name]


def setup(link: Link, applied: Sequence[Rule]) -> list[list[str]]:
    """After `add_netns`: the veth pair, addresses, routes, then the rules (inserted at the top of
    their chains, last first, so they match in order and before anyone else's)."""
    ns = ["-n", link.name]
    argvs = [
        [IP, "link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns", link.name],
        ["sysctl", "-q", "-w", f"net.ipv6.conf.{link.host_if}.disable_ipv6=1"],
        [IP, "addr", "add", f"{link.host_ip}/30", "dev", link.host_if],
        [IP, "link", "set", link.host_if, "up"],
        [IP, *ns, "addr", "add", f"{link.ns_ip}/30", "dev", link.ns_if],
        [IP, *ns, "link", "set", link.ns_if, "up"],
        [IP, *ns, "link", "set", "lo", "up"],
        [IP, *ns, "route", "add", "default", "via", link.host_ip],
    ]
    for table, chain, spec in reversed(applied):
        argvs.append([IPTABLES, "-w", "-t", table, "-I", chain, "1", *spec])
    return argvs


def teardown(link: Link, applied: Sequence[Rule]) -> list[list[str]]:
    argvs = [[IPTABLES, "-w", "-t", table, "-D", chain, *spec] for table, chain, spec in applied]
    return [*argvs, [IP, "link", "del", link.host_if], [IP, "netns", "del", link.name]]


def chain_exists(chain: str) -> list[str]:
    return [IPTABLES, "-w", "-S", chain]


def netns_pids(link: Link) -> list[str]:
    return [IP, "netns", "pids", link.name]


# -- running them ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as exc:
        raise ServiceError(
            f"cannot isolate the build: {argv[0]} not found (install iproute2 and iptables)"
        ) from exc


def _check(argv: list[str]) -> str:
    r = _run(argv)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise ServiceError(f"cannot isolate the build ({' '.join(argv[:4])}): {why}")
    return r.stdout


def allocate(subnet: str) -> Link:
    """A free slot: `ip netns add` fails for a name that exists, so concurrent builds (and other
    platforms on this host) never share one."""
    count = slots(subnet)
    start = random.randrange(count)
    for n in range(count):
        link = Link((start + n) % count, subnet)
        if Path(f"/sys/class/net/{link.host_if}").exists():
            continue
        r = _run(add_netns(link))
        if r.returncode == 0:
            return link
        if "exists" not in r.stderr:
            raise ServiceError(f"cannot isolate the build (ip netns add): {r.stderr.strip()}")
    raise ServiceError(f"no free build network left in {subnet}")


def kill_inside(link: Link) -> None:
    """SIGKILL what still runs in the build's namespace (only the build's own processes can)."""
    for word in _run(netns_pids(link)).stdout.split():
        with suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


@contextmanager
def isolated(subnet: str) -> Iterator[Link]:
    """A build network for the duration of the block; torn down (its processes killed) after."""
    dns = nameservers(Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else "")
    host_nets = host_networks(_check([IP, "-4", "-o", "addr", "show"]))
    forward = "DOCKER-USER" if _run(chain_exists("DOCKER-USER")).returncode == 0 else "FORWARD"
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")  # as docker does: NAT needs it
    link = allocate(subnet)
    applied = rules(link, dns, host_nets, forward)
    try:
        for argv in setup(link, applied):
            _check(argv)
        yield link
    finally:
        kill_inside(link)
        for argv in teardown(link, applied):
            _run(argv)  # best effort: a rule that never went in cannot come out
