"""The app network's route gets `quickack 1` (pure argv and the choice of routes; the real route in e2e)."""

from __future__ import annotations

from scheduler import quickack

ROUTE = {"dst": "172.20.0.0/16", "protocol": "kernel", "scope": "link", "prefsrc": "172.20.0.1", "flags": []}


def test_argv() -> None:
    assert quickack.show_argv("br-0123456789ab") == [
        "ip", "-json", "route", "show", "dev", "br-0123456789ab", "proto", "kernel"
    ]  # fmt: skip
    assert quickack.change_argv(ROUTE, "br-0123456789ab") == [
        "ip", "route", "change", "172.20.0.0/16", "dev", "br-0123456789ab", "proto", "kernel",
        "scope", "link", "src", "172.20.0.1", "quickack", "1",
    ]  # fmt: skip


def test_only_routes_without_quickack_are_changed() -> None:
    done = ROUTE | {"metrics": [{"quickack": 1}]}
    other_metric = ROUTE | {"dst": "172.21.0.0/16", "metrics": [{"mtu": 1400}]}
    assert quickack.lacking([ROUTE, done, other_metric]) == [ROUTE, other_metric]
    assert quickack.lacking([]) == []


def test_a_failure_is_reported_not_raised() -> None:
    assert quickack.ensure("no-such-bridge-for-deis") is False
