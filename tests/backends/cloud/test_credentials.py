"""Missing cloud credentials fail before anything is declared, naming the chain tried."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dstack_iac.backends.registry import get_backend
from dstack_iac.errors import MissingCredentials
from tests.helpers import CLI, REPO

import subprocess


def bare_env(tmp_path, **extra) -> dict:
    """No cloud variables, an empty home: what a machine without any cloud set-up looks like."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_"))}
    return {**keep, "HOME": str(tmp_path / "home"), "DSTACK_IAC_HOME": str(tmp_path / "state"), **extra}


@pytest.mark.parametrize("backend, chain_item", [("aws", "AWS_ACCESS_KEY_ID"), ("gcp", "GOOGLE_APPLICATION_CREDENTIALS")])
@pytest.mark.parametrize("command", ["run", "preview"])
def test_missing_credentials_fail_before_anything_is_created(tmp_path, backend, chain_item, command):
    (tmp_path / "t.dstack.yml").write_text("type: task\nresources:\n  gpu: 24GB\ncommands: [nvidia-smi]\n")
    args = [*CLI, command, str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-b", backend]
    result = subprocess.run(args + (["-y"] if command == "run" else []), cwd=REPO, env=bare_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stderr
    assert f"no {backend.upper()} credentials found; tried, in order:" in result.stderr
    assert chain_item in result.stderr and "nothing was provisioned" in result.stderr
    assert backend in result.stdout  # the plan (the chosen offer) is shown first
    assert not (tmp_path / "state").exists(), "no stack, key or run record may be created"


def require_credentials(cloud: str, env: dict, home: Path) -> str:
    from dstack_iac.backends.cloud.credentials import require_credentials as require

    backend = get_backend(cloud)
    return require(cloud, type(backend).credential_source, backend.credential_chain, env=env, home=home)


def test_each_link_of_the_chain_is_recognised(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(MissingCredentials):
        require_credentials("aws", env={}, home=home)
    assert require_credentials("aws", env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, home=home)
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text("[profile team]\nsso_session = x\n")
    assert "profile 'team'" in require_credentials("aws", env={"AWS_PROFILE": "team"}, home=home)
    with pytest.raises(MissingCredentials):
        require_credentials("aws", env={"AWS_PROFILE": "other"}, home=home)
    with pytest.raises(MissingCredentials):
        require_credentials("gcp", env={"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")}, home=home)
    (home / ".config" / "gcloud").mkdir(parents=True)
    (home / ".config" / "gcloud" / "application_default_credentials.json").write_text("{}")
    assert "application default credentials" in require_credentials("gcp", env={}, home=home)
