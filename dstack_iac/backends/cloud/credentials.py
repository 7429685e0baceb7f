"""Are there cloud credentials at all? Checked before any resource is declared, so a missing
credential fails in a second with the chain that was tried, instead of deep inside `pulumi up`.

This only looks for a source (environment, files, the machine's own identity); whether the
credentials are valid is the cloud's answer, at provisioning time. Each cloud backend names its
own chain (backends/<cloud>/credentials.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dstack_iac.errors import MissingCredentials

CredentialSource = Callable[[Mapping[str, str], Path], "str | None"]


def dmi(field: str) -> str:
    """What the machine says it is (/sys/class/dmi/id): how a cloud VM's own identity is recognised."""
    try:
        return Path(f"/sys/class/dmi/id/{field}").read_text().strip()
    except OSError:
        return ""


def require_credentials(cloud: str, find: CredentialSource, chain: Sequence[str],
                        env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The credential source found; MissingCredentials naming the chain otherwise."""
    source = find(os.environ if env is None else env, home or Path.home())
    if source is None:
        tried = "\n".join(f"  {index}. {step}" for index, step in enumerate(chain, 1))
        raise MissingCredentials(f"no {cloud.upper()} credentials found; tried, in order:\n{tried}")
    return source
