from gitserver.server import Gate


def test_the_gate_counts_preauth_connections_and_sessions_per_user() -> None:
    gate = Gate(max_preauth=2, max_sessions=2)
    assert gate.admit_connection() and gate.admit_connection()
    assert not gate.admit_connection()  # a third one still authenticating is turned away
    gate.authenticated()
    assert gate.admit_connection()
    assert gate.open_session("alice") and gate.open_session("alice")
    assert not gate.open_session("alice")
    assert gate.open_session("bob")  # another user is not affected
    gate.close_session("alice")
    assert gate.open_session("alice")
    for _ in range(3):
        gate.close_session("alice")
    assert gate.sessions == {"bob": 1}
