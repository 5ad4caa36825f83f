"""The log store on a real directory: bounds, positions, cursors, drops, recovery after a crash."""

from __future__ import annotations

from pathlib import Path

from releaser import logstore
from releaser.logstore import Line, LogStore, advance


def lines(n: int, start: int = 0, container: str = "c1", t0: float = 1000.0) -> list[Line]:
    return [Line(t0 + i, "web.1", 3, f"line {i}", container) for i in range(start, start + n)]


def test_lines_come_back_in_order_with_their_fields(tmp_path: Path) -> None:
    s = LogStore(tmp_path)
    s.append("app", [*lines(3), Line(2000.0, "deis", 0, 'ünïcode "quoted"\ttab')])
    s.flush()
    got = s.lines("app")
    assert [ln.text for ln in got] == ["line 0", "line 1", "line 2", 'ünïcode "quoted"\ttab']
    assert got[0] == Line(1000.0, "web.1", 3, "line 0", "c1")
    assert s.lines("app", limit=2, keep=lambda ln: ln.source == "web.1") == got[1:3]
    assert s.lines("other") == []


def test_the_bounds_hold_by_lines_and_by_bytes(tmp_path: Path) -> None:
    s = LogStore(tmp_path, max_lines=100, max_bytes=10**9)
    for k in range(10):
        s.append("app", lines(37, start=k * 37))
        s.flush()
    kept, _size = s.usage("app")
    assert 75 <= kept <= 100
    assert [ln.text for ln in s.lines("app")][-1] == "line 369"
    on_disk = sum(p.read_bytes().count(b"\n") for p in (tmp_path / "app").glob("*.jsonl"))
    assert on_disk == kept
    s = LogStore(tmp_path, max_lines=10**6, max_bytes=8192)
    s.append("big", [Line(1.0, "web.1", 1, "x" * 200) for _ in range(500)])
    s.flush()
    assert sum(p.stat().st_size for p in (tmp_path / "big").glob("*.jsonl")) <= 8192
    assert s.usage("big")[1] <= 8192


def test_following_from_a_position_misses_and_repeats_nothing(tmp_path: Path) -> None:
    s = LogStore(tmp_path, max_lines=40)  # segments of 10 lines: the follower crosses several
    s.append("app", lines(5))
    s.flush()
    pos = s.end("app")
    assert [ln.text for ln in s.lines("app", upto=pos)] == [f"line {i}" for i in range(5)]
    seen: list[str] = []
    for k in range(1, 4):
        s.append("app", lines(7, start=k * 7))
        s.flush()
        got, pos = s.read_from("app", pos)
        seen += [ln.text for ln in got]
    assert seen == [f"line {i}" for i in range(7, 28)]
    assert s.read_from("app", pos) == ([], pos)


def test_a_full_buffer_drops_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logstore, "BUFFER_LINES", 10)
    s = LogStore(tmp_path)
    s.append("chatty", lines(25))
    s.append("quiet", lines(2, container="c2"))
    s.flush()
    got = s.lines("chatty")
    assert [ln.text for ln in got[:10]] == [f"line {i}" for i in range(10)]
    assert got[-1].source == "deis" and got[-1].text.startswith("dropped 15 lines of web.1")
    assert len(s.lines("quiet")) == 2


def test_cursors_survive_a_restart_and_a_crash(tmp_path: Path) -> None:
    s = LogStore(tmp_path)
    s.append("app", [*lines(3), Line(1002.0, "web.1", 3, "same time", "c1")])
    s.flush()
    assert s.cursor("app", "c1") == (1002.0, 2)
    # A crash after the lines were written but before the cursors were saved, and a torn last line:
    seg = sorted((tmp_path / "app").glob("*.jsonl"))[-1]
    with open(seg, "ab") as f:
        f.write(Line(1003.0, "web.1", 3, "after the save", "c1").encode())
        f.write(b'{"t": 1004.0, "s": "web')
    again = LogStore(tmp_path)
    assert again.cursor("app", "c1") == (1003.0, 1)
    assert again.lines("app")[-1].text == "after the save"
    again.append("app", lines(1, start=10))
    again.flush()
    assert [ln.text for ln in again.lines("app", limit=2)] == ["after the save", "line 10"]
    again.forget_cursor("app", "c1")
    again.flush()
    assert LogStore(tmp_path).cursor("app", "c1") == (0.0, 0)


def test_advance_counts_lines_of_one_time() -> None:
    assert advance((0.0, 0), 5.0) == (5.0, 1)
    assert advance((5.0, 1), 5.0) == (5.0, 2)
    assert advance((5.0, 2), 4.0) == (5.0, 2)


def test_forget_removes_everything(tmp_path: Path) -> None:
    s = LogStore(tmp_path)
    s.append("app", lines(3))
    s.flush()
    s.forget("app")
    assert not (tmp_path / "app").exists() and s.lines("app") == []
