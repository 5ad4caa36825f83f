"""The buildpack builds' bridge: the rules a build link gets, on the platform's own docker network."""

from __future__ import annotations

from builders import buildnet


def test_the_bridge_is_the_platforms_own() -> None:
    a, b = buildnet.Bridge("/var/lib/deis"), buildnet.Bridge("/tmp/other")
    assert a.name.startswith("deis-builds-") and a.name != b.name
    assert len(a.host_if) <= 15 and a.host_if.startswith("dbb")
    assert not a.host_if.startswith(("docker", "br-"))  # or the build-to-bridge REJECT would match itself
    assert buildnet.create_bridge(a) == [
        "docker", "network", "create", "--driver", "bridge",
        "--opt", f"com.docker.network.bridge.name={a.host_if}",
        "--opt", "com.docker.network.bridge.enable_icc=false",
        "--opt", "com.docker.network.bridge.enable_ip_masquerade=true",
        "--label", "io.deis.platform=/var/lib/deis", a.name,
    ]  # fmt: skip


def test_the_bridge_blocks_the_host_and_private_ranges_but_not_the_internet() -> None:
    bridge = buildnet.Bridge("/s")
    h, tag = bridge.host_if, ["-m", "comment", "--comment", bridge.name]
    got = buildnet.bridge_rules(bridge, ["10.255.255.53"], ["192.0.2.0/24"], "DOCKER-USER")
    assert got[0] == ("filter", "INPUT", ["-i", h, *tag, "-j", "REJECT"])  # every host address
    specs = [spec for _, chain, spec in got[1:] if chain == "DOCKER-USER"]
    assert len(specs) == len(got) - 1  # no NAT of ours: docker masquerades the bridge
    assert specs[1] == ["-o", h, *tag, "-j", "REJECT"]  # nothing connects in, builds not to each other
    assert ["-i", h, "-d", "10.255.255.53/32", "-p", "udp", "--dport", "53", *tag, "-j", "ACCEPT"] in specs
    for net in ("172.16.0.0/12", "127.0.0.0/8", "10.0.0.0/8", "192.0.2.0/24"):
        assert ["-i", h, "-d", net, *tag, "-j", "REJECT"] in specs
    assert specs[-1] == ["-i", h, *tag, "-j", "ACCEPT"]


def test_the_rules_are_counted_by_their_comment() -> None:
    bridge = buildnet.Bridge("/s")
    wanted = buildnet.bridge_rules(bridge, [], [], "FORWARD")
    listing = (
        "-P INPUT ACCEPT\n"
        + "".join(f"-A {chain} {' '.join(spec)}\n" for _, chain, spec in wanted)
        + "-A FORWARD -i dbbother -m comment --comment deis-builds-other -j REJECT\n"
    )
    assert buildnet.tagged_count(listing, bridge.name) == len(wanted)


def test_the_build_networks_with_rules_are_found() -> None:
    listing = (
        "-A INPUT -i dbb0123456789ab -m comment --comment deis-builds-0123456789ab -j REJECT\n"
        "-A FORWARD -i dbh3 -m comment --comment deis-build-3 -j REJECT\n"
    )
    assert buildnet.bridge_names(listing) == {"deis-builds-0123456789ab"}
