"""The AWS SDK's default credential chain, as far as it can be seen without calling AWS."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dstack_iac.backends.cloud.credentials import dmi


def credential_source(env: Mapping[str, str], home: Path) -> str | None:
    """The first source of the AWS SDK's default chain that is present, or None."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "environment (AWS_ACCESS_KEY_ID)"
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    config = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    for path, header in ((credentials, f"[{profile}]"),
                         (config, "[default]" if profile == "default" else f"[profile {profile}]")):
        try:
            if header in path.read_text():
                return f"profile {profile!r} in {path}"
        except OSError:
            continue
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return "container credentials (ECS/EKS)"
    if "amazon" in dmi("sys_vendor").lower() or "amazon" in dmi("board_vendor").lower():
        return "EC2 instance profile"
    return None


CHAIN = ("AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY", "AWS_PROFILE / [default] in ~/.aws/credentials or ~/.aws/config "
         "(AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)", "AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN",
         "AWS_CONTAINER_CREDENTIALS_*_URI", "the EC2 instance profile")
