"""The Pulumi engine every Pulumi call of the package goes through: which CLI, which backend,
which secrets passphrase, and the environment the CLI runs with.

Kept in one module so that `run`, `preview`, `volume`, `doctor` and the tests all use the same
engine the same way.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.paths import cache_dir, ensure_private_dir, state_dir

# The Go module proxy here serves pulumi/pkg up to v3.259.0 (newer tags answer 403), so that is the
# engine scripts/setup can build; raise together with tools/pulumi/go.mod.
MIN_PULUMI_VERSION = (3, 259, 0)
PROJECT_NAME = "dstack-iac"
PLUGIN_OPT_IN_ENV = "DSTACK_IAC_PLUGIN_ACQUISITION"
DYNAMIC_PROVIDER_PLUGIN = "pulumi-resource-pulumi-python"

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION_RE.search(text)
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


def format_version(version: tuple[int, ...]) -> str:
    return "v" + ".".join(str(part) for part in version)


@dataclass(frozen=True)
class PulumiCli:
    path: Path
    version: tuple[int, int, int]
    source: str  # "PATH" or "cache"

    @property
    def root(self) -> Path:
        """The install root in the sense of `pulumi.automation.PulumiCommand` (`<root>/bin/pulumi`)."""
        return self.path.parent.parent

    @property
    def new_enough(self) -> bool:
        return self.version >= MIN_PULUMI_VERSION


def _cached_clis() -> list[PulumiCli]:
    found = []
    for binary in (cache_dir() / "pulumi").glob("v*/bin/pulumi"):
        version = parse_version(binary.parent.parent.name)
        if version and os.access(binary, os.X_OK):
            found.append(PulumiCli(binary, version, "cache"))
    return sorted(found, key=lambda cli: cli.version, reverse=True)


def _cli_on_path() -> PulumiCli | None:
    located = shutil.which("pulumi")
    if not located:
        return None
    try:
        out = subprocess.run([located, "version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = parse_version(out)
    return PulumiCli(Path(located).resolve(), version, "PATH") if version else None


@functools.cache
def find_pulumi() -> PulumiCli | None:
    """A Pulumi CLI new enough for the package: PATH first (the user's own), then the set-up cache.

    Returns the best one found even when it is too old, so callers can say which one and why.
    """
    on_path = _cli_on_path()
    if on_path and on_path.new_enough:
        return on_path
    cached = _cached_clis()
    if cached and cached[0].new_enough:
        return cached[0]
    return on_path or (cached[0] if cached else None)


class EngineUnavailable(RuntimeError):
    pass


def require_pulumi() -> PulumiCli:
    cli = find_pulumi()
    needed = format_version(MIN_PULUMI_VERSION)
    if cli is None:
        raise EngineUnavailable(f"no Pulumi CLI found (need {needed} or newer): run scripts/setup, or install Pulumi")
    if not cli.new_enough:
        raise EngineUnavailable(
            f"Pulumi CLI {format_version(cli.version)} at {cli.path} is too old (need {needed}): "
            "run scripts/setup or upgrade Pulumi"
        )
    return cli


def backend_url() -> str:
    """An explicit PULUMI_BACKEND_URL wins; else a file backend in the state dir."""
    return os.environ.get("PULUMI_BACKEND_URL") or (state_dir() / "pulumi").as_uri()


def passphrase_file() -> Path:
    return state_dir() / "passphrase"


def _passphrase_env() -> dict[str, str]:
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return {"PULUMI_CONFIG_PASSPHRASE": os.environ["PULUMI_CONFIG_PASSPHRASE"]}
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": os.environ["PULUMI_CONFIG_PASSPHRASE_FILE"]}
    path = passphrase_file()
    if not path.exists():
        ensure_private_dir(path.parent)
        # O_EXCL: two first runs at once must not overwrite each other's passphrase.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def engine_env(cli: PulumiCli | None = None) -> dict[str, str]:
    """The environment variables every Pulumi CLI call of the package runs with."""
    env = {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # Run stacks are ephemeral: per-update state backups would only pile up in the state dir.
        "PULUMI_DISABLE_CHECKPOINT_BACKUPS": "true",
        "PULUMI_BACKEND_URL": backend_url(),
        "PULUMI_PYTHON_CMD": sys.executable,
        # The CLI starts Python dynamic providers through a plugin script next to the engine.
        "PATH": os.pathsep.join(
            [str(p) for p in _plugin_dirs(cli)] + [os.environ.get("PATH", os.defpath)]
        ),
    }
    if os.environ.get(PLUGIN_OPT_IN_ENV, "").lower() not in ("1", "true", "yes"):
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env.update(_passphrase_env())
    if backend_url().startswith("file://"):
        ensure_private_dir(Path(backend_url().removeprefix("file://")))
    return env


def _plugin_dirs(cli: PulumiCli | None) -> list[Path]:
    dirs = [cache_dir() / "pulumi" / "plugins"]
    if cli is not None:
        dirs.insert(0, cli.path.parent)
    return [d for d in dirs if (d / DYNAMIC_PROVIDER_PLUGIN).exists()]


def dynamic_provider_plugin(cli: PulumiCli | None) -> Path | None:
    for directory in _plugin_dirs(cli):
        return directory / DYNAMIC_PROVIDER_PLUGIN
    located = shutil.which(DYNAMIC_PROVIDER_PLUGIN)
    return Path(located) if located else None


def workspace_options(project: str = PROJECT_NAME, work_dir: Path | None = None):
    """`LocalWorkspaceOptions` bound to the package's engine (imported lazily: pulumi is slow to import)."""
    from pulumi import automation as auto

    cli = require_pulumi()
    command = auto.PulumiCommand(root=str(cli.root), skip_version_check=True)
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir) if work_dir else None,
        env_vars=engine_env(cli),
        pulumi_command=command,
        project_settings=auto.ProjectSettings(name=project, runtime="python"),
    )
