"""When a scheduled backup is due (appliance.backups.due: pure)."""

from __future__ import annotations

import calendar

from appliance.backups import due


def test_due_once_a_day_after_its_time() -> None:
    today_0330 = calendar.timegm((2026, 12, 2, 3, 30, 0))
    assert not due("03:30", None, today_0330 - 60)  # not yet
    assert due("03:30", None, today_0330)  # never backed up, time has come
    assert due("03:30", today_0330 - 86400, today_0330 + 5)  # yesterday's backup only
    assert not due("03:30", today_0330 + 1, today_0330 + 3600)  # done today
    assert not due("23:59", today_0330, today_0330 + 3600)  # today's time still ahead
