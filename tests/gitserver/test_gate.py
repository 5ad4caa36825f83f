from __future__ import annotations

from gitserver.gate import Gate


class Conn:
    def __init__(self) -> None:
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_the_gate_counts_preauth_connections_and_sessions_per_user() -> None:
    gate = Gate(max_preauth=2, max_sessions=2)
    a, b, c = Conn(), Conn(), Conn()
    assert gate.admit_connection("10.0.0.1", a) and gate.admit_connection("10.0.0.1", b)
    assert not gate.admit_connection("10.0.0.1", c)  # a third one still authenticating is turned away
    gate.authenticated("10.0.0.1", a)
    gate.authenticated("10.0.0.1", a)  # twice (authenticated, then gone) counts once
    assert gate.preauth == 1
    assert gate.admit_connection("10.0.0.1", c)
    assert not (a.evicted or b.evicted or c.evicted)
    assert gate.open_session("alice") and gate.open_session("alice")
    assert not gate.open_session("alice")
    assert gate.open_session("bob")  # another user is not affected
    gate.close_session("alice")
    assert gate.open_session("alice")
    for _ in range(3):
        gate.close_session("alice")
    assert gate.sessions == {"bob": 1}


def test_one_address_cannot_take_every_preauth_slot_from_the_others() -> None:
    gate = Gate(max_preauth=6, max_sessions=10, max_preauth_per_address=2)
    hog = [Conn() for _ in range(7)]
    admitted = [gate.admit_connection("6.6.6.6", c) for c in hog]
    assert admitted == [True] * 6 + [False]  # a burst may use free slots, not more than all
    first, second = Conn(), Conn()
    assert gate.admit_connection("10.0.0.1", first)  # takes the hog's oldest slot
    assert [c.evicted for c in hog] == [True] + [False] * 6
    assert gate.admit_connection("10.0.0.1", second)
    assert hog[1].evicted
    assert not gate.admit_connection("10.0.0.1", Conn())  # its share is 2: no more evictions for it
    assert gate.waiting["6.6.6.6"] == hog[2:6] and gate.preauth == 6
    gate.authenticated("6.6.6.6", hog[0])  # the evicted one's connection_lost: nothing changes
    assert gate.preauth == 6
    others = [Conn(), Conn()]
    assert all(gate.admit_connection("10.0.0.2", c) for c in others)  # the hog still holds more than 2
    assert not gate.admit_connection("10.0.0.3", Conn())  # the hog is down to its share: nobody is over
    assert gate.waiting["6.6.6.6"] == hog[4:6]
