"""`schedule: {cron: ...}`: accepted spellings, normalised, and refusals that name the line and
the item."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dstack_iac.cli.app import app
from dstack_iac.config.loader import load_task
from dstack_iac.config.schedule import next_start

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "schedule"
runner = CliRunner()
T = "type: task\ncommands: [echo hi]\n"


def test_one_expression_is_a_list_of_one():
    task = load_task(FIXTURES, FIXTURES / "nightly.dstack.yml", home=FIXTURES)
    assert task.configuration.schedule.cron == ["0 3 * * *"]


def test_several_expressions_and_a_shorthand():
    task = load_task(FIXTURES, FIXTURES / "several.dstack.yml", home=FIXTURES)
    assert task.configuration.schedule.cron == ["15 6 * * 1-5", "@daily"]


def test_no_schedule_by_default_and_described(tmp_path):
    (tmp_path / "t.dstack.yml").write_text(T)
    task = load_task(tmp_path, tmp_path / "t.dstack.yml", home=tmp_path)
    assert task.configuration.schedule is None
    fields = type(task.configuration).model_fields
    assert fields["schedule"].description and fields["schedule"].annotation
    assert type(task.configuration).Schedule.model_fields["cron"].description


INVALID = [
    ("four-fields", T + "schedule:\n  cron: '* * * *'\n", 4, "schedule.cron",
     "'* * * *' has 4 fields: a cron expression has 5 (minute hour day-of-month month day-of-week)"),
    ("seconds-field", T + "schedule:\n  cron: '0 * * * * *'\n", 4, "schedule.cron", "'0 * * * * *' has 6 fields"),
    ("minute-out-of-range", T + "schedule:\n  cron: ['0 3 * * *', '61 * * * *']\n", 4, "schedule.cron[1]",
     "'61 * * * *' is not a valid cron expression"),
    ("not-a-string", T + "schedule:\n  cron:\n    - 5\n", 5, "schedule.cron[0]",
     "5 is not a cron expression: write it as a quoted string"),
    ("empty-list", T + "schedule:\n  cron: []\n", 4, "schedule.cron", "cron must be an expression"),
    ("missing-cron", T + "schedule: {}\n", 3, "schedule.cron", "is required"),
    ("unknown-key", T + "schedule:\n  cron: '@daily'\n  timezone: CET\n", 5, "schedule.timezone", "unknown field"),
]


@pytest.mark.parametrize("case_id,text,line,field,message", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_schedule(tmp_path, monkeypatch, case_id, text, line, field, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "bad.dstack.yml").write_text(text)
    result = runner.invoke(app, ["validate", "-f", "bad.dstack.yml", "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["errors"][0]
    assert (error["line"], error["field"]) == (line, field), error
    assert error["message"].startswith(message), error["message"]


def test_next_start_is_the_earliest_trigger_in_utc():
    after = datetime(2026, 5, 4, 6, 20, tzinfo=timezone.utc)  # a Monday
    assert next_start(["15 6 * * 1-5", "@daily"], after) == datetime(2026, 5, 5, 0, 0, tzinfo=timezone.utc)
    assert next_start(["30 6 * * 1-5"], after) == datetime(2026, 5, 4, 6, 30, tzinfo=timezone.utc)
    assert next_start(["* * * * *"], after) == datetime(2026, 5, 4, 6, 21, tzinfo=timezone.utc)
