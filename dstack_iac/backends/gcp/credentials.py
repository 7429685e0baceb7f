"""Google's application default credentials chain, as far as it can be seen without calling GCP."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dstack_iac.backends.cloud.credentials import dmi


def credential_source(env: Mapping[str, str], home: Path) -> str | None:
    if env.get("GOOGLE_CREDENTIALS"):
        return "GOOGLE_CREDENTIALS"
    if env.get("GOOGLE_APPLICATION_CREDENTIALS") and Path(env["GOOGLE_APPLICATION_CREDENTIALS"]).is_file():
        return f"GOOGLE_APPLICATION_CREDENTIALS ({env['GOOGLE_APPLICATION_CREDENTIALS']})"
    gcloud = Path(env.get("CLOUDSDK_CONFIG") or home / ".config" / "gcloud")
    if (gcloud / "application_default_credentials.json").is_file():
        return f"application default credentials in {gcloud}"
    if dmi("product_name") == "Google Compute Engine":
        return "the GCE service account"
    return None


CHAIN = ("GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS (a key file)",
         "gcloud application default credentials (`gcloud auth application-default login`)",
         "the GCE service account")
