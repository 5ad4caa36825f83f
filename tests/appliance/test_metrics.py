"""The access logs' tail: whole lines once each, across restarts (positions) and rotations."""

from __future__ import annotations

from pathlib import Path

from appliance import metrics
from appliance.metrics import AccessTail


def entry(n: int, status: int = 200) -> str:
    return f"{1700000000 + n}.000\t{status}\t0.001\t0.001\t10\t127.0.0.1:4000\tGET\t/n{n}\n"


def paths(hits: dict) -> dict[str, list[str]]:
    return {app: [h.path for h in hs] for app, hs in hits.items()}


def test_whole_lines_once_each_and_on_after_a_restart(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "myapp.access.log"
    log.write_text(entry(1) + entry(2) + entry(3)[:10])  # the third still being written
    (logs / "access.log").write_text(entry(9))  # the router's own: not an app's
    (logs / "Bad_Name.access.log").write_text(entry(9))
    tail = AccessTail(logs, tmp_path / "positions.json")
    assert paths(tail.read()) == {"myapp": ["/n1", "/n2"]}
    with log.open("a") as f:
        f.write(entry(3)[10:] + entry(4))
    assert paths(tail.read()) == {"myapp": ["/n3", "/n4"]}
    tail.save()
    with log.open("a") as f:
        f.write(entry(5))
    again = AccessTail(logs, tmp_path / "positions.json")  # the appliance restarted
    assert paths(again.read()) == {"myapp": ["/n5"]}
    assert again.read() == {}


def test_rotation_reads_the_old_file_to_its_end_and_then_removes_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(metrics, "ROTATE_BYTES", 100)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "myapp.access.log"
    log.write_text(entry(1) + entry(2))
    tail = AccessTail(logs, tmp_path / "positions.json")
    assert paths(tail.read()) == {"myapp": ["/n1", "/n2"]}
    reopened: list[bool] = []
    tail.rotate(lambda: reopened.append(True))
    rotated = logs / "myapp.access.log.1"
    assert reopened == [True] and rotated.exists() and not log.exists()
    with rotated.open("a") as f:  # a worker not yet reopened writes on to the old file ...
        f.write(entry(3))
    log.write_text(entry(4))  # ... and the others to the new one
    assert paths(tail.read()) == {"myapp": ["/n3", "/n4"]}  # the old file's lines first
    tail.rotate(lambda: reopened.append(True))
    assert rotated.exists()  # just written to: kept a while
    tail.rotate(lambda: reopened.append(True), now=rotated.stat().st_mtime + metrics.SETTLED + 1)
    assert not rotated.exists() and reopened == [True]
    assert tail.read() == {}
