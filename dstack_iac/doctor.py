"""`dstack-iac doctor`: can a local run work on this machine, and if not, what to do about it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dstack_iac import engine
from dstack_iac.infra.local.node import find_sshd
from dstack_iac.paths import state_dir


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    info: bool = False  # reported, never a problem for local runs


def run_checks() -> list[Check]:
    checks = [
        Check("python", sys.version_info >= (3, 10), f"{sys.executable} ({sys.version.split()[0]})",
              "use Python 3.10 or newer"),
    ]
    cli = engine.find_pulumi()
    needed = engine.format_version(engine.MIN_PULUMI_VERSION)
    if cli is None:
        checks.append(Check("pulumi", False, "not found", "run scripts/setup (builds or installs the Pulumi CLI)"))
    else:
        checks.append(Check("pulumi", cli.new_enough,
                            f"{cli.path} ({engine.format_version(cli.version)}, from {cli.source})",
                            f"need {needed} or newer: run scripts/setup"))
        plugin = engine.dynamic_provider_plugin(cli)
        checks.append(Check("dynamic provider plugin", plugin is not None, str(plugin or "missing"),
                            f"run scripts/setup (writes {engine.DYNAMIC_PROVIDER_PLUGIN} next to the CLI)"))
    sshd = find_sshd()
    checks.append(Check("sshd", sshd is not None, str(sshd or "not found"),
                        "install OpenSSH's server: sudo apt-get install openssh-server"))
    checks.append(Check("backend", True, engine.backend_url()))
    home = state_dir()
    writable = _writable(home)
    checks.append(Check("state dir", writable, str(home),
                        f"make {home} writable or point DSTACK_IAC_HOME elsewhere"))
    checks += _cloud_checks()
    return checks


def _cloud_checks() -> list[Check]:
    """Informational: a local run needs no cloud, so a missing credential is not a problem here."""
    from dstack_iac.infra.cloud.credentials import MissingCredentials, require_credentials

    checks = []
    for backend in ("aws", "gcp"):
        try:
            detail = require_credentials(backend)
        except MissingCredentials:
            detail = f"none found (needed only for -b {backend}; see docs/backends.md)"
        checks.append(Check(f"{backend} credentials", True, detail, info=True))
    return checks


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK)
