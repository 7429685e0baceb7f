"""`dstack-iac doctor`: can a local run work on this machine, and if not, what to do about it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dstack_iac.backends.registry import all_backends
from dstack_iac.errors import DstackIacError
from dstack_iac.infra import engine
from dstack_iac.model.backend import Check
from dstack_iac.paths import ensure_private_dir, state_dir


def run_checks() -> list[Check]:
    checks = [
        Check(name="python", ok=sys.version_info >= (3, 10), detail=f"{sys.executable} ({sys.version.split()[0]})",
              fix="use Python 3.10 or newer"),
    ]
    cli = engine.find_pulumi()
    needed = engine.format_version(engine.MIN_PULUMI_VERSION)
    if cli is None:
        checks.append(Check(name="pulumi", ok=False, detail="not found",
                            fix="run scripts/setup (builds or installs the Pulumi CLI)"))
    else:
        checks.append(Check(name="pulumi", ok=cli.new_enough,
                            detail=f"{cli.path} ({engine.format_version(cli.version)}, from {cli.source})",
                            fix=f"need {needed} or newer: run scripts/setup"))
        provider = engine.find_plugin(engine.PROVIDER_PLUGIN, cli)
        checks.append(Check(name="provider plugin", ok=provider is not None, detail=str(provider or "missing"),
                            fix=f"reinstall the package (scripts/setup): it provides {engine.PROVIDER_PLUGIN}"))
    checks.append(Check(name="backend", ok=True, detail=engine.backend_url()))
    checks.append(_state_dir_check())
    for backend in all_backends():
        checks += backend.doctor_checks()
    return checks


def _state_dir_check() -> Check:
    home = state_dir()
    fix = f"make {home} writable, or point DSTACK_IAC_HOME elsewhere"
    try:
        ensure_private_dir(home)
    except DstackIacError as exc:
        return Check(name="state dir", ok=False, detail=exc.message, fix=fix)
    probe = Path(home) / f".doctor-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return Check(name="state dir", ok=False, detail=f"{home}: {exc.strerror}", fix=fix)
    return Check(name="state dir", ok=True, detail=str(home))
