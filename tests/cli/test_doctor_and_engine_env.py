"""`dstack-iac doctor` and the engine environment every Pulumi call uses."""

from __future__ import annotations

import stat
import sys

from dstack_iac.infra import engine
from tests.helpers import run_cli


def test_doctor_reports_a_working_machine(state_dir):
    result = run_cli("doctor", env={"DSTACK_IAC_HOME": str(state_dir)})
    assert result.returncode == 0, result.stdout
    cli = engine.require_pulumi()
    for expected in ("python", "pulumi", engine.format_version(cli.version), str(cli.path), "sshd",
                     "backend", f"file://{state_dir}/pulumi", "state dir", str(state_dir)):
        assert expected in result.stdout
    assert "FIX" not in result.stdout


def test_doctor_fails_with_a_fix_when_the_state_dir_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("doctor", env={"DSTACK_IAC_HOME": str(blocker / "home")})
    assert result.returncode == 1
    assert "FIX" in result.stdout and "point DSTACK_IAC_HOME elsewhere" in result.stdout


def test_engine_env_defaults(state_dir, monkeypatch):
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", engine.PLUGIN_OPT_IN_ENV):
        monkeypatch.delenv(name, raising=False)
    env = engine.engine_env()
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PULUMI_BACKEND_URL"] == (state_dir / "pulumi").as_uri()
    assert env["PULUMI_PYTHON_CMD"] == sys.executable
    passphrase = state_dir / "passphrase"
    assert env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    first = passphrase.read_text()
    engine.engine_env()
    assert passphrase.read_text() == first, "generated once"


def test_engine_env_respects_the_user(state_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "elsewhere").as_uri())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "mine")
    monkeypatch.setenv(engine.PLUGIN_OPT_IN_ENV, "1")
    env = engine.engine_env()
    assert env["PULUMI_BACKEND_URL"] == (tmp_path / "elsewhere").as_uri()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "mine"
    assert "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION" not in env
    assert not (state_dir / "passphrase").exists()
