"""Which backends need the team's secrets provider (infra/stack.py require_shared_secrets)."""

from __future__ import annotations

import pytest

from dstack_iac.errors import EnvironmentProblem
from dstack_iac.infra.stack import require_shared_secrets


@pytest.mark.parametrize("url", ["", "file:///srv/pulumi", "https://api.pulumi.com"])
def test_the_file_backend_and_pulumi_cloud_work_without_a_passphrase(monkeypatch, url):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", url)
    require_shared_secrets()


@pytest.mark.parametrize("url", ["s3://team-bucket", "gs://team-bucket", "azblob://team"])
def test_a_shared_bucket_needs_the_teams_secrets(monkeypatch, url):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", url)
    with pytest.raises(EnvironmentProblem, match="is shared, but"):
        require_shared_secrets()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "team")
    require_shared_secrets()
