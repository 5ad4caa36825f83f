import io

from core.output import Output
from hooks.pre_receive import ZERO, deploy_target, parse_updates, run


def test_deploy_target_prefers_master() -> None:
    ups = parse_updates(f"{ZERO} {'a' * 40} refs/heads/main\n{ZERO} {'b' * 40} refs/heads/master\n")
    assert deploy_target(ups) == (ZERO, "b" * 40, "refs/heads/master")
    assert deploy_target(parse_updates(f"{ZERO} {'a' * 40} refs/heads/feature\n")) is None


def test_other_branches_are_stored_without_deploying() -> None:
    buf = io.StringIO()
    code = run(f"{ZERO} {'a' * 40} refs/heads/feature\n", {"DEIS_APP": "x", "DEIS_USER": "u"}, Output(buf))
    assert code == 0
    assert buf.getvalue() == "       feature stored (not deployed: only master or main deploys)\n"


def test_deleting_the_deploy_branch_is_refused() -> None:
    buf = io.StringIO()
    code = run(f"{'a' * 40} {ZERO} refs/heads/master\n", {"DEIS_APP": "x", "DEIS_USER": "u"}, Output(buf))
    assert code == 1
    assert buf.getvalue() == " !     deleting master is not allowed: it is what x runs\n"
