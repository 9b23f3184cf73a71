"""When the next sweep runs (the NCRONTAB schedule's next time), and the sweep's budget against the
Functions host's timeout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from kvca_core.errors import ConfigurationError
from kvca_core.settings import SETTINGS, Settings, next_occurrence

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("schedule,after,expected", [
    ("0 0 */6 * * *", "2026-03-05T07:12:33", "2026-03-05T12:00:00"),
    ("0 0 */6 * * *", "2026-03-05T12:00:00", "2026-03-05T18:00:00"),  # strictly after
    ("0 0 */6 * * *", "2026-12-31T23:00:00", "2027-01-01T00:00:00"),
    ("*/10 * * * * *", "2026-03-05T07:12:33.9", "2026-03-05T07:12:40"),
    ("5/20 * * * * *", "2026-03-05T07:12:33", "2026-03-05T07:12:45"),
    ("0 30 9 * * Mon-Fri", "2026-03-06T10:00:00", "2026-03-09T09:30:00"),  # Friday, after 09:30: Monday
    ("0 0 12 16 * Mon", "2026-03-05T00:00:00", "2026-03-16T12:00:00"),  # day and weekday both match
    ("0 0 0 29 Feb *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("0 15,45 1-2 * * *", "2026-03-05T01:50:00", "2026-03-05T02:15:00"),
])
def test_the_next_run_is_the_schedules_next_time_in_utc(schedule, after, expected):
    when = dt.datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_occurrence(schedule, when) == dt.datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_a_schedule_that_never_fires_has_no_next_run():
    assert next_occurrence("0 0 0 30 Feb *", dt.datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_the_default_budget_leaves_time_to_finish_within_host_json_timeout():
    timeout = json.loads((ROOT / "host.json").read_text())["functionTimeout"]
    hours, minutes, seconds = (int(part) for part in timeout.split(":"))
    budget = float(next(s.default for s in SETTINGS if s.name == "KVCA_SWEEP_BUDGET_SECONDS"))
    # A started renewal, the summary and a webhook notice (3 tries of 10 s) after the budget.
    assert hours * 3600 + minutes * 60 + seconds - budget >= 60


@pytest.mark.parametrize("name,raw,fragment", [
    ("KVCA_SWEEP_BUDGET_SECONDS", "0", "above 0"),
    ("KVCA_SWEEP_READ_SHARE", "0", "above 0 and at most 1"),
    ("KVCA_SWEEP_READ_SHARE", "1.5", "above 0 and at most 1"),
    ("KVCA_SWEEP_READ_SHARE", "a quarter", "not a number"),
    ("KVCA_CREATE_LIMIT", "0", "at least 1"),
])
def test_malformed_scale_settings_are_refused_naming_the_setting(name, raw, fragment):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"KVCA_VAULT_URL": "https://v.vault.azure.net", name: raw})
    assert name in str(refused.value) and fragment in str(refused.value)
