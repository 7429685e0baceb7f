"""`dstack-iac secret`: values in from a prompt, stdin or --value, kept encrypted under the state
dir, listed by name only, and a task referring to an unknown one refused before planning."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dstack_iac.cli.app import app
from dstack_iac.errors import ExitStatus

runner = CliRunner()
VALUE = "tok-4f1b9c-secret"


def test_set_list_get_delete(state_dir):
    assert runner.invoke(app, ["secret", "set", "HF_TOKEN"], input=VALUE + "\n").exit_code == 0
    assert runner.invoke(app, ["secret", "set", "wandb.key", "--value", "w-123"]).exit_code == 0
    listed = runner.invoke(app, ["secret", "list", "--json"])
    assert json.loads(listed.stdout) == {"secrets": ["HF_TOKEN", "wandb.key"]}
    assert VALUE not in listed.stdout
    got = runner.invoke(app, ["secret", "get", "HF_TOKEN"])
    assert got.exit_code == 0 and got.stdout.strip() == VALUE
    assert runner.invoke(app, ["secret", "delete", "HF_TOKEN", "-y"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["secret", "list", "--json"]).stdout) == {"secrets": ["wandb.key"]}


def test_values_are_encrypted_at_rest(state_dir):
    runner.invoke(app, ["secret", "set", "HF_TOKEN"], input=VALUE + "\n")
    stored = [path for path in state_dir.rglob("*") if path.is_file()]
    assert stored and not any(VALUE.encode() in path.read_bytes() for path in stored)
    assert all(path.stat().st_mode & 0o077 == 0 for path in stored), "only the owner reads the store"


def test_unknown_names_and_empty_values_are_clear_errors(state_dir):
    missing = runner.invoke(app, ["secret", "get", "NOPE"])
    assert missing.exit_code == ExitStatus.BAD_INPUT and "NOPE" in missing.output
    assert "Traceback" not in missing.output
    empty = runner.invoke(app, ["secret", "set", "EMPTY"], input="")
    assert empty.exit_code == ExitStatus.BAD_INPUT and "no value for EMPTY" in empty.output
    bad = runner.invoke(app, ["secret", "set", "9bad", "--value", "x"])
    assert bad.exit_code == ExitStatus.BAD_INPUT


def test_a_task_naming_an_unknown_secret_is_refused_before_planning(state_dir, tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\ncommands: [echo $T]\nenv:\n  - T=${{ secrets.MISSING }}\n")
    result = runner.invoke(app, ["preview", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml")])
    assert result.exit_code == ExitStatus.BAD_INPUT
    assert "MISSING" in result.output and "dstack-iac secret set MISSING" in result.output
