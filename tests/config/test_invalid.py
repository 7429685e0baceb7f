"""A table of invalid files: exit code 2, and the exact line, field path and message."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dstack_iac.cli.app import app
from tests.config.invalid_cases import CASES

runner = CliRunner()


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,text,line,field,message", CASES, ids=[c[0] for c in CASES])
def test_invalid_file(tmp_path, monkeypatch, case_id, text, line, field, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no user profiles
    (tmp_path / "bad.dstack.yml").write_text(text)
    result = runner.invoke(app, ["validate", "-f", "bad.dstack.yml", "--json"])
    assert result.exit_code == 2, result.output
    import json

    errors = json.loads(result.stdout)["errors"]
    assert errors[0]["file"] == "bad.dstack.yml"
    assert (errors[0]["line"], errors[0]["field"]) == (line, field)
    assert errors[0]["message"].startswith(message)
    assert errors[0]["column"] >= 1


def test_several_errors_are_reported_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.dstack.yml").write_text(
        "type: task\ncommands: [x]\nnodes: 0\nresources:\n  gpu: A10G..A100\nspot_policy: cheap\n"
    )
    result = runner.invoke(app, ["validate", "-f", "bad.dstack.yml"])
    assert result.exit_code == 2
    text = result.stderr
    assert "3 problems in the configuration; nothing was provisioned" in text
    assert "bad.dstack.yml:3:8: nodes:" in text
    assert "bad.dstack.yml:5:8: resources.gpu:" in text
    assert "bad.dstack.yml:6:14: spot_policy:" in text


def test_file_name_must_end_with_dstack_yml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.yml").write_text("type: task\ncommands: [x]\n")
    result = runner.invoke(app, ["validate", "-f", "train.yml"])
    assert result.exit_code == 2
    assert "must end with .dstack.yml, e.g. train.dstack.yml" in result.stderr


def test_default_file_is_dot_dstack_yml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "no configuration: create .dstack.yml here" in runner.invoke(app, ["validate"]).stderr
    (tmp_path / ".dstack.yml").write_text("type: task\ncommands: [x]\n")
    assert runner.invoke(app, ["validate"]).exit_code == 0
