"""Are there cloud credentials at all? Checked before any resource is declared, so a missing
credential fails in a second with the chain that was tried, instead of deep inside `pulumi up`.

This only looks for a source (environment, files, the machine's own identity); whether the
credentials are valid is the cloud's answer, at provisioning time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class MissingCredentials(Exception):
    exit_code = 4


def _dmi(field: str) -> str:
    try:
        return Path(f"/sys/class/dmi/id/{field}").read_text().strip()
    except OSError:
        return ""


def aws_credential_source(env: Mapping[str, str], home: Path) -> str | None:
    """The first source of the AWS SDK's default chain that is present, or None."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "environment (AWS_ACCESS_KEY_ID)"
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    config = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    for path, header in ((credentials, f"[{profile}]"), (config, "[default]" if profile == "default" else f"[profile {profile}]")):
        try:
            if header in path.read_text():
                return f"profile {profile!r} in {path}"
        except OSError:
            continue
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return "container credentials (ECS/EKS)"
    if "amazon" in _dmi("sys_vendor").lower() or "amazon" in _dmi("board_vendor").lower():
        return "EC2 instance profile"
    return None


AWS_CHAIN = ("AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY", "AWS_PROFILE / [default] in ~/.aws/credentials or ~/.aws/config "
             "(AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)", "AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN",
             "AWS_CONTAINER_CREDENTIALS_*_URI", "the EC2 instance profile")


def gcp_credential_source(env: Mapping[str, str], home: Path) -> str | None:
    if env.get("GOOGLE_CREDENTIALS"):
        return "GOOGLE_CREDENTIALS"
    if env.get("GOOGLE_APPLICATION_CREDENTIALS") and Path(env["GOOGLE_APPLICATION_CREDENTIALS"]).is_file():
        return f"GOOGLE_APPLICATION_CREDENTIALS ({env['GOOGLE_APPLICATION_CREDENTIALS']})"
    gcloud = Path(env.get("CLOUDSDK_CONFIG") or home / ".config" / "gcloud")
    if (gcloud / "application_default_credentials.json").is_file():
        return f"application default credentials in {gcloud}"
    if _dmi("product_name") == "Google Compute Engine":
        return "the GCE service account"
    return None


GCP_CHAIN = ("GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS (a key file)",
             "gcloud application default credentials (`gcloud auth application-default login`)",
             "the GCE service account")

_CHECKS = {"aws": (aws_credential_source, AWS_CHAIN), "gcp": (gcp_credential_source, GCP_CHAIN)}


def require_credentials(backend: str, env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The credential source found for `backend`; MissingCredentials naming the chain otherwise."""
    find, chain = _CHECKS[backend]
    source = find(os.environ if env is None else env, home or Path.home())
    if source is None:
        tried = "\n".join(f"  {index}. {step}" for index, step in enumerate(chain, 1))
        raise MissingCredentials(f"no {backend.upper()} credentials found; tried, in order:\n{tried}")
    return source
