"""buildah, ip and iptables command lines (pure), and the Dockerfile build's pure parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import buildah, buildnet, dockerbuild
from builders.buildah import Store
from core.errors import BuildError

STORE = Store(Path("/s/apps/a"), Path("/s/run/a"), Path("/s/base"))
BASE = [
    "buildah",
    "--root",
    "/s/apps/a",
    "--runroot",
    "/s/run/a",
    "--storage-driver",
    "overlay",
    "--storage-opt",
    "overlay.skip_mount_home=true",
    "--storage-opt",
    "overlay.imagestore=/s/base",
]


def test_bud_names_build_args_without_values_and_runs_in_the_callers_network() -> None:
    argv = buildah.bud(
        STORE, Path("/w/ctx"), Path("/w/Dockerfile"), "r/a:git-1", ["GREETING"], {"ca-bundle": Path("/ca")}
    )
    assert argv == [
        *BASE,
        "bud",
        "--isolation",
        "oci",
        "--network",
        "host",
        "--pull=never",
        "--layers",
        "--force-rm",
        "--format",
        "docker",
        "-f",
        "/w/Dockerfile",
        "-t",
        "r/a:git-1",
        "--build-arg",
        "GREETING",
        "--secret",
        "id=ca-bundle,src=/ca",
        "/w/ctx",
    ]
    assert buildah.limits(1 << 30, "/deis-builds/b/run") == [
        "--memory", f"{1 << 30}b", "--cgroup-parent", "/deis-builds/b/run",
    ]  # fmt: skip


def test_in_netns_uses_nsenter_not_ip_netns_exec() -> None:
    assert buildah.in_netns(Path("/run/netns/n"), ["buildah", "bud"]) == [
        "nsenter",
        "--net=/run/netns/n",
        "--",
        "buildah",
        "bud",
    ]


ACCESS = buildah.RegistryAccess(Path("/s/tls/registry-auth.json"), Path("/s/tls/registry-ca"))
FLAGS = ["--authfile", "/s/tls/registry-auth.json", "--cert-dir", "/s/tls/registry-ca", "--tls-verify=true"]


def test_push_and_pull_authenticate_by_file_and_verify_the_registry() -> None:
    shared = Store(Path("/s/base"), Path("/s/run/base"))
    assert buildah.pull(shared, "r/base/x:1", ACCESS)[-8:] == [
        "pull",
        "--quiet",
        *FLAGS,
        "docker://r/base/x:1",
    ]
    assert "overlay.imagestore" not in " ".join(buildah.pull(shared, "x", ACCESS))
    push = buildah.push(STORE, "r/a:1", "r/a:1", ACCESS)
    assert push[len(BASE) :] == ["push", "--quiet", *FLAGS, "--format", "v2s2", "r/a:1", "docker://r/a:1"]
    assert not any("creds" in a or "password" in a for a in push)  # argv is world-readable in /proc


LINK = buildnet.Link(5, "10.213.0.0/16")


def test_link_addresses() -> None:
    assert (LINK.name, LINK.host_if, LINK.ns_if) == ("deis-build-5", "dbh5", "dbn5")
    assert (LINK.cidr, LINK.host_ip, LINK.ns_ip) == ("10.213.0.20/30", "10.213.0.21", "10.213.0.22")
    assert buildnet.slots("10.213.0.0/16") == 16384


TAG = ["-m", "comment", "--comment", "deis-build-5"]


def test_rules_refuse_everything_but_dns_and_the_outside() -> None:
    rules = buildnet.rules(LINK, ["10.255.255.53"], ["192.0.2.0/24"], "DOCKER-USER")
    assert rules[0] == ("filter", "INPUT", ["-i", "dbh5", *TAG, "-j", "REJECT"])
    assert rules[-1] == ("nat", "POSTROUTING", ["-s", "10.213.0.20/30", *TAG, "-j", "MASQUERADE"])
    fwd = [spec for _, chain, spec in rules if chain == "DOCKER-USER"]
    assert fwd[0] == [
        "-o",
        "dbh5",
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        *TAG,
        "-j",
        "ACCEPT",
    ]
    assert fwd[1] == ["-o", "dbh5", *TAG, "-j", "REJECT"]
    dns = ["-i", "dbh5", "-d", "10.255.255.53/32", "-p", "udp", "--dport", "53", *TAG, "-j", "ACCEPT"]
    assert fwd[2] == dns
    assert ["-i", "dbh5", "-o", "docker+", *TAG, "-j", "REJECT"] in fwd
    for net in ("10.0.0.0/8", "127.0.0.0/8", "172.16.0.0/12", "169.254.0.0/16", "192.0.2.0/24"):
        assert ["-i", "dbh5", "-d", net, *TAG, "-j", "REJECT"] in fwd
    assert fwd[-1] == ["-i", "dbh5", *TAG, "-j", "ACCEPT"]  # only after every refusal


def test_setup_and_the_rules_in_one_restore() -> None:
    setup = buildnet.setup(LINK)
    assert setup[0] == [
        "ip",
        "link",
        "add",
        "dbh5",
        "type",
        "veth",
        "peer",
        "name",
        "dbn5",
        "netns",
        "deis-build-5",
    ]
    assert ["sysctl", "-q", "-w", "net.ipv6.conf.dbh5.disable_ipv6=1"] in setup
    assert setup[-1] == ["ip", "-n", "deis-build-5", "route", "add", "default", "via", "10.213.0.21"]
    rules: list[buildnet.Rule] = [
        ("filter", "INPUT", ["-i", "x", "-j", "REJECT"]),
        ("filter", "FORWARD", ["-o", "x", "-j", "REJECT"]),
        ("nat", "POSTROUTING", ["-s", "n", "-j", "MASQUERADE"]),
    ]
    assert buildnet.restore_script(rules, insert=True) == (
        "*filter\n-I FORWARD 1 -o x -j REJECT\n-I INPUT 1 -i x -j REJECT\nCOMMIT\n"
        "*nat\n-I POSTROUTING 1 -s n -j MASQUERADE\nCOMMIT\n"
    )
    assert buildnet.restore_script(rules, insert=False).startswith("*filter\n-D INPUT -i x -j REJECT\n")
    down = buildnet.teardown(LINK, rules)
    assert down[0] == ["iptables", "-w", "-t", "filter", "-D", "INPUT", "-i", "x", "-j", "REJECT"]
    assert down[-2:] == [["ip", "link", "del", "dbh5"], ["ip", "netns", "del", "deis-build-5"]]


def test_rules_left_behind_are_found_by_their_comment() -> None:
    listing = (
        "-P INPUT ACCEPT\n"
        "-A INPUT -i dbh5 -m comment --comment deis-build-5 -j REJECT --reject-with icmp-port-unreachable\n"
        "-A INPUT -i dbh51 -m comment --comment deis-build-51 -j REJECT\n"
    )
    assert buildnet.deletions("filter", listing, "deis-build-5") == [
        [
            "iptables",
            "-w",
            "-t",
            "filter",
            "-D",
            "INPUT",
            "-i",
            "dbh5",
            *TAG,
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ]
    ]


def test_nameservers_and_host_networks() -> None:
    conf = "# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\n"
    assert buildnet.nameservers(conf) == ["10.255.255.53"]
    addrs = (
        "1: lo    inet 127.0.0.1/8 scope host lo\n"
        "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n"
        "3: docker0    inet 172.17.0.1/16 scope global docker0\n"
        "4: eth1    inet 203.0.113.7/28 scope global eth1\n"
    )
    assert buildnet.host_networks(addrs) == ["192.0.2.0/24", "203.0.113.0/28"]


def test_build_args_come_only_from_the_listed_config_vars() -> None:
    config = {
        "DOCKER_BUILD_ARGS": "GREETING, MISSING  NODE_ENV",
        "GREETING": "hi",
        "NODE_ENV": "x",
        "DB": "p",
    }
    assert dockerbuild.build_args(config) == {"GREETING": "hi", "NODE_ENV": "x"}
    assert dockerbuild.build_args({"DB": "p"}) == {}


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "PATH", "TMPDIR", "http_proxy", "BUILDAH_ISOLATION", "GODEBUG"]
)
def test_build_args_the_builder_reads_itself_are_refused(name: str) -> None:
    with pytest.raises(BuildError, match=f"cannot pass {name}"):
        dockerbuild.build_args({"DOCKER_BUILD_ARGS": name, name: "x"})


def test_secrets_are_the_listed_config_vars() -> None:
    config = {"DOCKER_BUILD_SECRETS": "TOKEN", "TOKEN": "t", "OTHER": "o"}
    assert dockerbuild.secret_values(config) == {"TOKEN": "t"}


@pytest.mark.parametrize(
    ("written", "engine", "store"),
    [
        ("deis/stack:bookworm", "deis/stack:bookworm", "localhost/deis/stack:bookworm"),
        ("python", "python:latest", "localhost/python:latest"),
        ("docker.io/library/python:3.11", "python:3.11", "docker.io/library/python:3.11"),
        ("quay.io/x/y:1", "quay.io/x/y:1", "quay.io/x/y:1"),
        ("localhost:5001/x:1", "localhost:5001/x:1", "localhost:5001/x:1"),
    ],
)
def test_base_refs(written: str, engine: str, store: str) -> None:
    ref = dockerbuild.base_ref(written, "127.0.0.1:5000")
    assert (ref.engine_name, ref.store_name) == (engine, store)


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("127.0.0.1:5000/victim:git-1234", "platform registry"),
        ("python@sha256:" + "a" * 64, "by digest"),
        ("0123456789ab", "not an image name"),
        ("sha256:" + "b" * 64, "not an image name"),
        ("$UNSET", "not an image name"),
    ],
)
def test_base_refs_refused(written: str, why: str) -> None:
    with pytest.raises(BuildError, match=why):
        dockerbuild.base_ref(written, "127.0.0.1:5000")


def test_registry_name_of_a_base() -> None:
    ref = dockerbuild.base_ref("deis/stack:bookworm", "r:1")
    assert dockerbuild.registry_name("r:1", ref, "sha256:" + "c" * 64) == "r:1/base/deis/stack:cccccccccccc"


def test_inputs_key_changes_with_every_input_but_never_holds_a_secret() -> None:
    args = ("ctx", "FROM a", {"A": "1"}, {"S": "secret"}, {"a": "id1"}, "ca")
    key = dockerbuild.inputs_key(*args)
    assert key == dockerbuild.inputs_key(*args)
    for i, other in enumerate(["ctx2", "FROM b", {"A": "2"}, {"S": "other"}, {"a": "id2"}, "ca2"]):
        changed = list(args)
        changed[i] = other
        assert dockerbuild.inputs_key(*changed) != key  # type: ignore[arg-type]


def test_relayed_lines() -> None:
    assert dockerbuild.relay_line(b"STEP 1/2: FROM a\n") == ("STEP 1/2: FROM a", None)
    assert dockerbuild.relay_line(b'Error: building at STEP "RUN x": exit status 3') == (
        None,
        'building at STEP "RUN x": exit status 3',
    )
    assert dockerbuild.relay_line(b'time="2026" level=warning msg="no such arg"') == (
        "WARNING: no such arg",
        None,
    )
    assert dockerbuild.relay_line(b"   \n") == (None, None)
