"""CLI flags, profiles and their precedence: CLI flag > configuration > profile."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from dstack_iac.cli.app import app
from dstack_iac.config.schema import EXAMPLES, reference_markdown, task_json_schema
from dstack_iac.config.models import ResourcesSpec, Retry, TaskConfiguration
from tests.helpers import REPO, run_cli

runner = CliRunner()


def validate(tmp_path, monkeypatch, text, *args, profiles=None, home_profiles=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "t.dstack.yml").write_text(text)
    for base, content in ((tmp_path, profiles), (tmp_path / "home", home_profiles)):
        if content:
            (base / ".dstack").mkdir(parents=True, exist_ok=True)
            (base / ".dstack" / "profiles.yml").write_text(content)
    result = runner.invoke(app, ["validate", "-f", "t.dstack.yml", "--json", *args])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def test_flags_override_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_SHELL", "shell-value")
    result, out = validate(
        tmp_path, monkeypatch,
        "type: task\ncommands: ['python train.py ${{ run.args }}']\nresources: {gpu: 24GB}\nports: [8080]\nenv: [A=1]\n",
        "--gpu", "A100:2", "--memory", "64GB..", "--cpu", "arm:8", "--disk", "200GB", "-b", "aws", "-r", "us-east-1",
        "--instance-type", "p4d.24xlarge", "--spot", "--max-price", "3.5", "--max-duration", "2h",
        "--retry-limit", "3h", "-e", "A=2", "-e", "FROM_SHELL", "-p", "9000:8080", "-p", "*:7860", "-n", "my-run",
        "--train_batch_size=1", "extra",
    )
    assert result.exit_code == 0, result.output
    c = out["configuration"]
    assert c["commands"] == ["python train.py --train_batch_size=1 extra"]
    assert c["resources"]["gpu"]["names"] == ["A100"] and c["resources"]["gpu"]["count"] == {"min": 2, "max": 2}
    assert c["resources"]["memory"] == {"min": 64.0, "max": None}
    assert c["resources"]["cpu"] == {"arch": "arm", "count": {"min": 8, "max": 8}}
    assert c["resources"]["disk"]["size"] == {"min": 200.0, "max": 200.0}
    assert (c["backends"], c["regions"], c["instance_types"]) == (["aws"], ["us-east-1"], ["p4d.24xlarge"])
    assert (c["spot_policy"], c["max_price"], c["max_duration"]) == ("spot", 3.5, 7200)
    assert c["retry"]["duration"] == 3 * 3600
    assert c["env"] == {"A": "2", "FROM_SHELL": "shell-value"}
    assert c["ports"] == [{"local_port": 9000, "container_port": 8080}, {"local_port": None, "container_port": 7860}]
    assert c["name"] == "my-run"


def test_bad_flag_value_names_the_flag(tmp_path, monkeypatch):
    result, out = validate(tmp_path, monkeypatch, "type: task\ncommands: [x]\n", "--gpu", "A10G..A100")
    assert result.exit_code == 2
    [error] = out["errors"]
    assert error["source"] == "--gpu" and error["line"] is None and error["field"] == "resources.gpu"
    result, out = validate(tmp_path, monkeypatch, "type: task\ncommands: [x]\n", "-p", "nope")
    assert result.exit_code == 2 and out["errors"][0]["source"] == "--port"


def test_profile_precedence(tmp_path, monkeypatch):
    profiles = (
        "profiles:\n"
        "  - name: cheap\n    default: true\n    spot_policy: spot\n    max_price: 1.0\n    regions: [eu-west-1]\n"
        "  - name: big\n    backends: [gcp]\n    max_price: 9\n"
    )
    home = "profiles:\n  - name: home-only\n    backends: [aws]\n"
    text = "type: task\ncommands: [x]\nmax_price: 2.0\n"
    _, out = validate(tmp_path, monkeypatch, text, profiles=profiles, home_profiles=home)
    c = out["configuration"]
    assert (c["spot_policy"], c["max_price"], c["regions"]) == ("spot", 2.0, ["eu-west-1"])  # file beats profile
    _, out = validate(tmp_path, monkeypatch, text, "--max-price", "5", profiles=profiles)
    assert out["configuration"]["max_price"] == 5.0  # flag beats file
    _, out = validate(tmp_path, monkeypatch, text, "--profile", "big", profiles=profiles)
    assert out["configuration"]["backends"] == ["gcp"] and out["configuration"]["spot_policy"] == "on-demand"
    _, out = validate(tmp_path, monkeypatch, text, "--profile", "home-only", profiles=profiles, home_profiles=home)
    assert out["configuration"]["backends"] == ["aws"]
    _, out = validate(tmp_path, monkeypatch, text, "--no-profile", profiles=profiles)
    assert out["configuration"]["regions"] is None and out["configuration"]["spot_policy"] == "on-demand"
    result, out = validate(tmp_path, monkeypatch, text, "--profile", "missing", profiles=profiles)
    assert result.exit_code == 2 and "no profile named 'missing'" in out["errors"][0]["message"]


def test_profile_errors_point_into_the_profiles_file(tmp_path, monkeypatch):
    result, out = validate(tmp_path, monkeypatch, "type: task\ncommands: [x]\n",
                           profiles="profiles:\n  - name: p\n    spot_policy: sometimes\n")
    assert result.exit_code == 2
    [error] = out["errors"]
    assert error["file"].endswith(".dstack/profiles.yml") and error["line"] == 3
    assert error["field"] == "profiles[0].spot_policy"


def test_registry_password_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("REG_TOKEN", "s3cr3t-value")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.dstack.yml").write_text(
        "type: task\nimage: ghcr.io/me/img\nregistry_auth:\n  username: me\n  password: ${{ env.REG_TOKEN }}\n"
    )
    for args in (["--json"], []):
        result = runner.invoke(app, ["validate", "-f", "t.dstack.yml", *args])
        assert result.exit_code == 0, result.output
        assert "s3cr3t-value" not in result.output
        assert "**********" in result.output
    from dstack_iac.config.loader import load_task

    task = load_task(tmp_path, tmp_path / "t.dstack.yml", home=tmp_path)
    assert task.configuration.registry_auth.password.get_secret_value() == "s3cr3t-value"


def test_reference_doc_is_generated_from_the_models():
    assert (REPO / "docs" / "reference" / "task.md").read_text() == reference_markdown()
    documented = set(EXAMPLES)
    for prefix, model in (("", TaskConfiguration), ("resources.", ResourcesSpec), ("retry.", Retry)):
        assert {prefix + name for name in model.model_fields} <= documented


def test_schema_command_prints_json_schema():
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    # Tasks and volumes first; the types backends bring (an SSH fleet) follow.
    assert schema["oneOf"][:2] == [{"$ref": "#/$defs/TaskConfiguration"}, {"$ref": "#/$defs/VolumeConfiguration"}]
    task, volume = schema["$defs"]["TaskConfiguration"], schema["$defs"]["VolumeConfiguration"]
    assert "commands" in task["properties"] and task["additionalProperties"] is False
    assert task["properties"]["type"]["const"] == "task" and volume["properties"]["type"]["const"] == "volume"
    # Every backend dstack knows validates (planning says which ones dstack-iac provisions).
    assert {"local", "aws", "gcp", "azure", "runpod", "ssh"} <= set(volume["properties"]["backend"]["enum"])
    assert volume["required"] == ["type", "name", "backend"]
    assert {**task_json_schema(), "$defs": None} == {**task, "$defs": None}


def test_validate_is_fast():
    # Not a timing assertion: a sanity bound that catches an accidental import of pulumi (seconds).
    start = time.perf_counter()
    result = run_cli("validate", "-f", "tests/fixtures/seeds/000-00-train.dstack.yml")
    assert result.returncode == 0
    assert time.perf_counter() - start < 5


def test_every_configuration_field_says_what_it_does():
    from dstack_iac.config.models import (CPUSpec, DiskSpec, GPUSpec, InstanceVolumeMount, IntRange, MemoryRange,
                                          NetworkVolumeMount, PortMapping, RegistryAuth, VolumeConfiguration)

    models = (TaskConfiguration, ResourcesSpec, Retry, CPUSpec, GPUSpec, DiskSpec, IntRange, MemoryRange, PortMapping,
              RegistryAuth, NetworkVolumeMount, InstanceVolumeMount, VolumeConfiguration)
    missing = [f"{model.__name__}.{name}" for model in models for name, field in model.model_fields.items()
               if name != "kind" and not field.description]
    assert missing == []
