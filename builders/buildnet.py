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

import hashlib
import ipaddress
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from core import dockercli
from core.errors import ServiceError

IP = "ip"
IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
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

# A link with nothing running in it for this long was left behind (set-up takes well under a second).
STALE_AFTER = 120.0
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


def filter_specs(h: str, dns: Sequence[str], host_nets: Sequence[str]) -> list[list[str]]:
    """FORWARD rules of a build interface `h` (a link's host end or the buildpack builds' bridge)."""
    fwd: list[list[str]] = [
        ["-o", h, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-o", h, "-j", "REJECT"],  # new connections into it, from the host or between builds
    ]
    for ns in dns:
        fwd += [
            ["-i", h, "-d", f"{ns}/32", "-p", proto, "--dport", "53", "-j", "ACCEPT"]
            for proto in ("udp", "tcp")
        ]
    fwd += [["-i", h, "-o", bridge, "-j", "REJECT"] for bridge in ("docker+", "br-+")]
    fwd += [["-i", h, "-d", net, "-j", "REJECT"] for net in (*BLOCKED, *host_nets)]
    fwd.append(["-i", h, "-j", "ACCEPT"])
    return fwd


def _tagged(found: list[Rule], name: str) -> list[Rule]:
    # Each rule names its link, so a link left behind by a killed appliance can be found and removed.
    tag = ["-m", "comment", "--comment", name]
    return [(table, chain, spec[:-2] + tag + spec[-2:]) for table, chain, spec in found]


def rules(link: Link, dns: Sequence[str], host_nets: Sequence[str], forward: str) -> list[Rule]:
    """The filter and NAT rules of one build link, in the order they must match."""
    h = link.host_if
    found: list[Rule] = [
        ("filter", "INPUT", ["-i", h, "-j", "REJECT"]),
        *(("filter", forward, spec) for spec in filter_specs(h, dns, host_nets)),
        ("nat", "POSTROUTING", ["-s", link.cidr, "-j", "MASQUERADE"]),
    ]
    return _tagged(found, link.name)


def add_netns(link: Link) -> list[str]:
    return [IP, "netns", "add", link.name]


def setup(link: Link) -> list[list[str]]:
    """After `add_netns`: the veth pair, addresses and the default route (the rules go in with
    `restore`, in one call: an `iptables` process per rule would cost about 20 ms each)."""
    ns = ["-n", link.name]
    return [
        [IP, "link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns", link.name],
        ["sysctl", "-q", "-w", f"net.ipv6.conf.{link.host_if}.disable_ipv6=1"],
        [IP, "addr", "add", f"{link.host_ip}/30", "dev", link.host_if],
        [IP, "link", "set", link.host_if, "up"],
        [IP, *ns, "addr", "add", f"{link.ns_ip}/30", "dev", link.ns_if],
        [IP, *ns, "link", "set", link.ns_if, "up"],
        [IP, *ns, "link", "set", "lo", "up"],
        [IP, *ns, "route", "add", "default", "via", link.host_ip],
    ]


RESTORE = [IPTABLES_RESTORE, "-w", "--noflush"]


def restore_script(applied: Sequence[Rule], insert: bool) -> str:
    """`iptables-restore --noflush` input adding the rules (each at the top of its chain, last
    first, so they match in order and before anyone else's) or deleting them."""
    lines: list[str] = []
    for table in dict.fromkeys(t for t, _, _ in applied):
        mine = [(chain, spec) for t, chain, spec in applied if t == table]
        ordered = reversed(mine) if insert else iter(mine)
        lines.append(f"*{table}")
        lines += [
            " ".join([*(["-I", chain, "1"] if insert else ["-D", chain]), *spec]) for chain, spec in ordered
        ]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def teardown(link: Link, applied: Sequence[Rule]) -> list[list[str]]:
    """One `iptables -D` per rule (the fallback when one `restore` of them all fails), then the link."""
    argvs = [[IPTABLES, "-w", "-t", table, "-D", chain, *spec] for table, chain, spec in applied]
    return [*argvs, [IP, "link", "del", link.host_if], [IP, "netns", "del", link.name]]


def list_rules(table: str) -> list[str]:
    return [IPTABLES, "-w", "-t", table, "-S"]


def deletions(table: str, listing: str, name: str) -> list[list[str]]:
    """`iptables -D` for every rule of `iptables -S` output that carries the comment `name`."""
    argvs = []
    for line in listing.splitlines():
        words = line.split()
        if (
            len(words) > 2
            and words[0] == "-A"
            and name in words
            and words[words.index(name) - 1] == "--comment"
        ):
            argvs.append([IPTABLES, "-w", "-t", table, "-D", *words[1:]])
    return argvs


def chain_exists(chain: str) -> list[str]:
    return [IPTABLES, "-w", "-S", chain]


def netns_pids(link: Link) -> list[str]:
    return [IP, "netns", "pids", link.name]


# -- running them ---------------------------------------------------------------------------------


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        if stdin is None:
            return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        return subprocess.run(argv, capture_output=True, text=True, input=stdin, check=False)
    except FileNotFoundError as exc:
        raise ServiceError(
            f"cannot isolate the build: {argv[0]} not found (install iproute2 and iptables)"
        ) from exc


def _check(argv: list[str], stdin: str | None = None) -> str:
    r = _run(argv, stdin)
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


def reap(subnet: str, older_than: float, only: set[str] | None = None) -> list[str]:
    """Remove build links nothing runs in any more that are older than `older_than` seconds (left
    by an appliance that was killed mid-build: a live build always has buildah inside); their names."""
    reaped = []
    for entry in _run([IP, "netns", "list"]).stdout.splitlines():
        name = entry.split()[0] if entry.split() else ""
        if not re.fullmatch(r"deis-build-\d+", name) or (only is not None and name not in only):
            continue
        link = Link(int(name.rsplit("-", 1)[1]), subnet)
        try:
            age = time.time() - link.path.stat().st_mtime
        except OSError:
            continue
        if age < older_than or _run(netns_pids(link)).stdout.split():
            continue
        for table in ("filter", "nat"):
            for argv in deletions(table, _run(list_rules(table)).stdout, name):
                _run(argv)
        _run([IP, "link", "del", link.host_if])
        _run([IP, "netns", "del", name])
        reaped.append(name)
    return reaped


def kill_inside(link: Link) -> None:
    """SIGKILL what still runs in the build's namespace (only the build's own processes can)."""
    for word in _run(netns_pids(link)).stdout.split():
        with suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


@contextmanager
def isolated(subnet: str) -> Iterator[Link]:
    """A build network for the duration of the block; torn down (its processes killed) after."""
    dns, host_nets, forward = _environment()
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")  # as docker does: NAT needs it
    reap(subnet, older_than=STALE_AFTER)
    link = allocate(subnet)
    applied = rules(link, dns, host_nets, forward)
    try:
        for argv in setup(link):
            _check(argv)
        _check(RESTORE, restore_script(applied, insert=True))
        yield link
    finally:
        kill_inside(link)
        down = teardown(link, applied)
        if _run(RESTORE, restore_script(applied, insert=False)).returncode == 0:
            down = down[-2:]
        for argv in down:
            _run(argv)  # best effort: a rule that never went in cannot come out


# -- the buildpack builds' bridge -----------------------------------------------------------------
# The slugbuilder is a docker container: it cannot join a namespace of ours before its first line
# runs, so buildpack builds get a docker network of the platform's own whose bridge carries the
# same rules as a build link (docker masquerades it to the internet; inter-container traffic off).

BRIDGE_OPTIONS = {
    "com.docker.network.bridge.enable_icc": "false",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
}
_bridge_lock = threading.Lock()


@dataclass(frozen=True)
class Bridge:
    platform: str  # the state dir

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.platform.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"deis-builds-{self.digest}"

    @property
    def host_if(self) -> str:
        return f"dbb{self.digest}"  # 15 characters: the kernel's limit for an interface name


def bridge_rules(bridge: Bridge, dns: Sequence[str], host_nets: Sequence[str], forward: str) -> list[Rule]:
    """A build link's filter rules, on the bridge (docker does the NAT)."""
    h = bridge.host_if
    found: list[Rule] = [
        ("filter", "INPUT", ["-i", h, "-j", "REJECT"]),
        *(("filter", forward, spec) for spec in filter_specs(h, dns, host_nets)),
    ]
    return _tagged(found, bridge.name)


def create_bridge(bridge: Bridge) -> list[str]:
    options = {"com.docker.network.bridge.name": bridge.host_if, **BRIDGE_OPTIONS}
    return dockercli.network_create(bridge.name, options, {"io.deis.platform": bridge.platform})


def tagged_count(listing: str, name: str) -> int:
    """How many rules of `iptables -S` output carry the comment `name`."""
    return len(deletions("filter", listing, name))


def bridge_names(listing: str) -> set[str]:
    """The build networks that `iptables -S` output has rules of."""
    return set(re.findall(r"--comment (deis-builds-[0-9a-f]{12})\b", listing))


def forget_bridge(name: str, listing: str | None = None) -> None:
    """Remove the rules of build network `name` (its network is gone, or going)."""
    for argv in deletions("filter", listing or _run(list_rules("filter")).stdout, name):
        _run(argv)


def remove_bridge(platform: str) -> None:
    """The platform's build network and its rules gone (`down`: no build runs then). A build still
    attached keeps the network; its rules stay with it, and the next `ensure_bridge` reuses both."""
    bridge = Bridge(platform)
    with _bridge_lock:
        r = _run(dockercli.network_rm(bridge.name))
        if r.returncode == 0 or "not found" in r.stderr:
            forget_bridge(bridge.name)


def _environment() -> tuple[list[str], list[str], str]:
    dns = nameservers(Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else "")
    host_nets = host_networks(_check([IP, "-4", "-o", "addr", "show"]))
    forward = "DOCKER-USER" if _run(chain_exists("DOCKER-USER")).returncode == 0 else "FORWARD"
    return dns, host_nets, forward


def ensure_bridge(platform: str) -> Bridge:
    """The platform's build network with its rules in place (made, or its rules put back after a
    restart of the engine flushed them); checked before every buildpack build (about 10 ms)."""
    bridge = Bridge(platform)
    with _bridge_lock:
        if not Path(f"/sys/class/net/{bridge.host_if}").exists():
            r = _run(create_bridge(bridge))
            if r.returncode != 0 and "already exists" not in r.stderr:
                why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
                raise ServiceError(f"cannot isolate the build (docker network create): {why}")
        dns, host_nets, forward = _environment()
        wanted = bridge_rules(bridge, dns, host_nets, forward)
        listing = _check(list_rules("filter"))
        for name in bridge_names(listing) - {bridge.name}:  # rules of a build network since removed
            if not Path(f"/sys/class/net/dbb{name.rsplit('-', 1)[1]}").exists():
                forget_bridge(name, listing)
        if tagged_count(listing, bridge.name) != len(wanted):
            for argv in deletions("filter", listing, bridge.name):
                _run(argv)
            _check(RESTORE, restore_script(wanted, insert=True))
    return bridge
