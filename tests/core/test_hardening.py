"""Issue 17, hole 8: the state dir's permissions, and names from tenants shown safely."""

import stat
from pathlib import Path

from core.names import shown
from core.settings import PRIVATE_DIRS, Settings


def test_the_state_dir_keeps_secrets_from_other_local_users(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "etcd").mkdir(parents=True, mode=0o755)  # as an older platform left it
    Settings(state_dir=state).save()
    assert stat.S_IMODE(state.stat().st_mode) == 0o711  # passable (nginx workers), not listable
    for name in PRIVATE_DIRS:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o700, name


def test_control_characters_are_shown_escaped() -> None:
    assert shown("laptop") == "laptop"
    assert shown("\x1b[2J\x1b]0;pwned\x07evil") == "\\x1b[2J\\x1b]0;pwned\\x07evil"
    assert shown("a\x9bb\x7f") == "a\\x9bb\\x7f"  # C1 CSI and DEL too
    assert shown("é ok") == "é ok"
