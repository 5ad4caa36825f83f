"""The upgrade marker: new sessions wait while it exists; deploys running are waited for first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from appliance import handover
from core.errors import ServiceError
from core.output import Output
from core.settings import Settings


def test_the_marker_exists_only_inside_and_deploys_in_flight_are_waited_for(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    busy = [["a", "b"], ["b"], []]
    seen = []
    out = io.StringIO()
    with handover.upgrading(s, Output(out), lambda: busy.pop(0)):
        seen.append(s.upgrade_marker.exists())
        assert busy == []  # asked until nothing ran
    assert seen == [True]
    assert not s.upgrade_marker.exists()
    assert "waiting for the deploys of a, b to finish" in out.getvalue()


def test_a_deploy_that_never_ends_fails_the_upgrade_and_removes_the_marker(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    ran = []
    with pytest.raises(ServiceError, match=r"deploys of app still running after 0.2 s; run deis up again"):
        with handover.upgrading(s, Output(io.StringIO()), lambda: ["app"], wait=0.2):
            ran.append(True)
    assert ran == []  # nothing replaced
    assert not s.upgrade_marker.exists()
