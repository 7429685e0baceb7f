"""The Pulumi engine every Pulumi call of the package goes through: which CLI, which backend,
which secrets passphrase, the environment it runs with, and how its processes are run.

The Automation API's own driver spends a process on a version check, selects before it
initialises, and reads outputs and a summary back with three more processes after every
update. A run needs none of that, so the package drives the CLI itself, the way the Automation
API does for inline programs (an in-process language server the engine calls back, engine
events streamed over gRPC), in as few processes as the engine allows.

Each engine process starts in a session of its own: a Ctrl+C in the terminal, or a signal to the
CLI's process group, never reaches the engine or its providers half-way through creating
something. The run decides what to do with a signal, and asks the engine to cancel the way the
engine supports (SIGINT: finish what is in flight, record it, stop).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from dstack_iac.errors import EnvironmentProblem, InfrastructureError
from dstack_iac import paths
from dstack_iac.paths import cache_dir, ensure_private_dir
from dstack_iac.state.secrets import ensure_passphrase

# Raise together with tools/pulumi/go.mod (scripts/setup builds that tag when no CLI is found).
MIN_PULUMI_VERSION = (3, 276, 0)
PROJECT_NAME = "dstack-iac"
PLUGIN_OPT_IN_ENV = "DSTACK_IAC_PLUGIN_ACQUISITION"
DYNAMIC_PROVIDER_PLUGIN = "pulumi-resource-pulumi-python"
PROVIDER_PLUGIN = "pulumi-resource-dstack-iac"
PULUMI_ENV = "DSTACK_IAC_PULUMI"  # an explicit engine: the path of a `pulumi` binary

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
        out = subprocess.run([located, "version"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = parse_version(out)
    return PulumiCli(Path(located).resolve(), version, "PATH") if version else None


def _explicit_cli(path: str) -> PulumiCli | None:
    binary = Path(path).expanduser()
    if not os.access(binary, os.X_OK):
        return None
    version = parse_version(binary.parent.parent.name) if binary.parent.name == "bin" else None
    if version is None:
        try:
            version = parse_version(subprocess.run([str(binary), "version"], capture_output=True, text=True,
                                                   timeout=30).stdout)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return PulumiCli(binary, version, PULUMI_ENV) if version else None


@functools.cache
def find_pulumi() -> PulumiCli | None:
    """A Pulumi CLI new enough for the package: `$DSTACK_IAC_PULUMI` when set, else the set-up
    cache first (its version is in its path, so finding it costs no process), then PATH (the
    user's own).

    Returns the best one found even when it is too old, so callers can say which one and why."""
    if os.environ.get(PULUMI_ENV):
        return _explicit_cli(os.environ[PULUMI_ENV])
    cached = _cached_clis()
    if cached and cached[0].new_enough:
        return cached[0]
    on_path = _cli_on_path()
    if on_path and on_path.new_enough:
        return on_path
    return on_path or (cached[0] if cached else None)


def require_pulumi() -> PulumiCli:
    cli = find_pulumi()
    needed = format_version(MIN_PULUMI_VERSION)
    if cli is None:
        raise EnvironmentProblem(f"no Pulumi CLI found (need {needed} or newer)",
                                 hint="run scripts/setup, or install Pulumi (https://www.pulumi.com/docs/install/)")
    if not cli.new_enough:
        raise EnvironmentProblem(f"Pulumi CLI {format_version(cli.version)} at {cli.path} is too old (need {needed})",
                                 hint="run scripts/setup, or upgrade Pulumi")
    return cli


backend_url = paths.backend_url  # where the state lives is decided in paths (run records live there too)


def file_backend_dir() -> Path | None:
    """The directory of a file:// backend (percent-decoded, as the engine reads it), else None."""
    url = backend_url()
    if not url.startswith("file://"):
        return None
    path = unquote(urlparse(url).path)
    return Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)


def _passphrase_env() -> dict[str, str]:
    return ensure_passphrase()


def plugin_dirs(cli: PulumiCli | None) -> list[Path]:
    """Where the engine finds the package's plugins: this Python's scripts (the provider), next to
    the CLI and in the set-up cache (the Python dynamic provider and language host)."""
    dirs = [Path(sys.executable).parent, cache_dir() / "pulumi" / "plugins"]
    if cli is not None:
        dirs.insert(1, cli.path.parent)
    return [d for d in dirs if (d / PROVIDER_PLUGIN).exists() or (d / DYNAMIC_PROVIDER_PLUGIN).exists()]


def find_plugin(name: str, cli: PulumiCli | None) -> Path | None:
    for directory in plugin_dirs(cli):
        if (directory / name).exists():
            return directory / name
    located = shutil.which(name)
    return Path(located) if located else None


def engine_env(cli: PulumiCli | None = None) -> dict[str, str]:
    """The environment variables every Pulumi CLI call of the package runs with."""
    env = {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # Run stacks are ephemeral: per-update state backups would only pile up in the state dir.
        "PULUMI_DISABLE_CHECKPOINT_BACKUPS": "true",
        "PULUMI_BACKEND_URL": backend_url(),
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_AUTOMATION_API": "true",
        "PULUMI_DEBUG_COMMANDS": "true",  # enables --event-log, how events reach us
        "PATH": os.pathsep.join([str(p) for p in plugin_dirs(cli)] + [os.environ.get("PATH", os.defpath)]),
    }
    if os.environ.get(PLUGIN_OPT_IN_ENV, "").lower() not in ("1", "true", "yes"):
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env.update(_passphrase_env())
    directory = file_backend_dir()
    if directory is not None:
        ensure_private_dir(directory)
    return env


class EngineError(InfrastructureError):
    """A Pulumi CLI call failed; `output` is what it said (its error lines first)."""

    def __init__(self, args: Sequence[str], code: int, stdout: str, stderr: str):
        self.args_used = list(args)
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.cancelled = "update canceled" in (stdout + stderr).lower() or "canceled" in stderr.lower()
        super().__init__(f"`pulumi {' '.join(args[:2])}` failed: {error_lines(stdout + chr(10) + stderr)}")


def error_lines(text: str, limit: int = 2000) -> str:
    """The engine's own error lines (and the items of an "N errors occurred" list), else its last
    lines: what a user needs from its output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    chosen, listing = [], False
    for line in lines:
        if "error" in line.lower() or (listing and line.startswith("*")):
            chosen.append(line)
        listing = ("errors occurred" in line) or (listing and line.startswith("*"))
    return "\n".join(dict.fromkeys(chosen or lines[-8:]))[:limit] or "(no output)"


class Engine:
    """The CLI of this process: its processes (tracked, so a signal can cancel or stop them by
    pid), its environment, and the project directory every command runs in."""

    def __init__(self, cli: PulumiCli):
        self.cli = cli
        self._live: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._work_dir: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        # Read per command: the state dir or backend may change between calls (tests do).
        return {**os.environ, **engine_env(self.cli)}

    @property
    def work_dir(self) -> Path:
        """A project directory naming the package's project, so that stack commands and inline
        programs agree on it."""
        if self._work_dir is None:
            directory = Path(tempfile.mkdtemp(prefix="dstack-iac-engine-"))
            (directory / "Pulumi.yaml").write_text(f"name: {PROJECT_NAME}\nruntime: python\n")
            self._work_dir = directory
        return self._work_dir

    def run(self, args: Sequence[str], *, on_line: Callable[[str], None] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """`pulumi ARGS` in its own session; stdout lines go to `on_line` as they come."""
        command = [str(self.cli.path), "--non-interactive", *args]
        process = subprocess.Popen(command, cwd=self.work_dir, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                   encoding="utf-8", errors="replace", start_new_session=True)
        with self._lock:
            self._live[process.pid] = process
        try:
            stderr_chunks: list[str] = []
            reader = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True)
            reader.start()
            stdout_lines = []
            for line in process.stdout:
                stdout_lines.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            process.wait()
            reader.join()
        finally:
            with self._lock:
                self._live.pop(process.pid, None)
        result = subprocess.CompletedProcess(command, process.returncode, "".join(stdout_lines), "".join(stderr_chunks))
        if check and result.returncode != 0:
            raise EngineError(list(args), result.returncode, result.stdout, result.stderr)
        return result

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._live)

    def cancel(self) -> None:
        """Ask every running engine command to cancel, as the engine supports it: it lets the
        operations in flight finish and records them, then stops."""
        with self._lock:
            pids = list(self._live)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def abandon(self) -> list[int]:
        """Stop every running engine command and its plugins now (their process groups, by pid):
        the user chose not to wait. `dstack-iac stop` finishes the job from the state."""
        with self._lock:
            pids = list(self._live)
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return pids


@functools.cache
def _engine_for(cli: PulumiCli) -> Engine:
    return Engine(cli)


def get_engine() -> Engine:
    """The engine of this process (one per CLI found)."""
    return _engine_for(require_pulumi())


def workspace_options(project: str = PROJECT_NAME, work_dir: Path | None = None):
    """`LocalWorkspaceOptions` bound to the package's engine, for Automation API programs of
    one's own (imported lazily: pulumi is slow to import)."""
    from pulumi import automation as auto

    cli = require_pulumi()
    command = auto.PulumiCommand(root=str(cli.path.parent.parent), skip_version_check=True)
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir) if work_dir else None,
        env_vars=engine_env(cli),
        pulumi_command=command,
        project_settings=auto.ProjectSettings(name=project, runtime="python"),
    )
