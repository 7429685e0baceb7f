"""One error model through the CLI: every failure is one message and its documented exit code,
never a traceback (unless --debug asks for it)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dstack_iac.errors import EXIT_STATUS_MEANINGS, ExitStatus
from tests.backends.fake.backend import REGISTRATION, SCENARIO_ENV
from tests.helpers import REPO, run_cli, stack_files

CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # nothing listens there: no network for urllib


def no_cloud_env(tmp_path: Path, **extra: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_"))}
    return {**keep, "HOME": str(tmp_path / "home"), "DSTACK_IAC_HOME": str(tmp_path / "state"), **extra}


def test_preview_on_a_cloud_without_network_says_so(tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\ncommands: [nvidia-smi]\nresources: {gpu: 24GB}\n")
    env = no_cloud_env(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="example",
                       HTTPS_PROXY=CLOSED_PORT_PROXY, https_proxy=CLOSED_PORT_PROXY)
    env["DSTACK_IAC_SSH_CIDR"] = None
    result = run_cli("preview", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-b", "aws", env=env)
    assert result.returncode == ExitStatus.ACCESS, result.stderr
    assert "could not learn this machine's public address" in result.stderr and "DSTACK_IAC_SSH_CIDR" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_volume_create_without_a_pulumi_cli_says_how_to_get_one(tmp_path):
    (tmp_path / "v.dstack.yml").write_text("type: volume\nname: data\nbackend: local\n")
    env = {**no_cloud_env(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
           "DSTACK_IAC_PULUMI": None}
    result = run_cli("volume", "create", "-f", str(tmp_path / "v.dstack.yml"), "-y", env=env)
    assert result.returncode == ExitStatus.ENVIRONMENT, result.stderr
    assert "no Pulumi CLI found" in result.stderr and "run scripts/setup" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "volumes").exists()


def test_validate_on_binary_garbage_names_the_file(tmp_path):
    path = tmp_path / "garbage.dstack.yml"
    path.write_bytes(b"type: task\n" + bytes(range(128, 256)) + b"\x00\x01")
    result = run_cli("validate", "-f", str(path))
    assert result.returncode == ExitStatus.BAD_INPUT
    assert "garbage.dstack.yml:2: is not UTF-8 text (byte 11 is 0x80)" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = run_cli("validate", "-f", str(path), "--json")
    assert as_json.returncode == ExitStatus.BAD_INPUT and json.loads(as_json.stdout)["valid"] is False


def test_run_on_a_cloud_without_credentials_exits_with_the_access_code(tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\ncommands: [nvidia-smi]\nresources: {gpu: 24GB}\n")
    result = run_cli("run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-b", "aws", "-y",
                     env=no_cloud_env(tmp_path))
    assert result.returncode == ExitStatus.ACCESS == 4, result.stderr
    assert "no AWS credentials found" in result.stderr and "nothing was provisioned" in result.stderr
    assert "Traceback" not in result.stderr


def fake_env(tmp_path: Path, **scenario) -> dict:
    return {"DSTACK_IAC_HOME": str(tmp_path / "state"), "DSTACK_IAC_BACKENDS": REGISTRATION,
            SCENARIO_ENV: json.dumps(scenario), "PYTHONPATH": str(REPO)}


def test_a_broken_program_with_retry_fails_within_seconds(tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\nbackends: [fake]\nretry: true\ncommands: [echo]\n")
    started = time.monotonic()
    result = run_cli("run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y",
                     env=fake_env(tmp_path, program_error_on=list(range(1, 50))))
    took = time.monotonic() - started
    assert result.returncode == ExitStatus.FAILED, result.stderr
    assert took < 30, f"took {took:.0f}s: a bug must not be retried"
    assert ("Run failed: provision failed: the run's Pulumi program failed: RuntimeError: a deliberate bug in the "
            "fake cluster component") in result.stderr
    assert "retrying" not in result.stderr and "Traceback" not in result.stderr
    assert stack_files(tmp_path / "state") == []


def test_a_bug_is_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\nbackends: [fake]\ncommands: [echo]\n")
    args = ["preview", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml")]
    plain = run_cli(*args, env=fake_env(tmp_path, bug_in_offers=True))
    assert plain.returncode == ExitStatus.FAILED
    assert "error: unexpected error (ZeroDivisionError: division by zero); this is a bug" in plain.stderr
    assert "Traceback" not in plain.stderr
    debug = run_cli("--debug", *args, env=fake_env(tmp_path, bug_in_offers=True))
    assert debug.returncode == ExitStatus.FAILED and "Traceback (most recent call last)" in debug.stderr


def test_the_exit_status_table_is_documented():
    text = (REPO / "docs" / "errors.md").read_text()
    for status in ExitStatus:
        assert f"| {int(status)} | `{status.name}` | {EXIT_STATUS_MEANINGS[status]} |" in text
