"""How people reach an active run's nodes: `attach` (ports, logs) and `ssh`.

While a run is active, its directory holds `access.json` (each node's address, port, user and
pinned host key, each group's ports, its key), and `<state dir>/ssh/config` holds `Host <run>` and
`Host <run>-<rank>` entries that pin each node's host key through the run's own known_hosts
file (StrictHostKeyChecking yes: a node that shows another key is refused). Each node also gets
`ssh_env.sh`: the run's environment, its working directory and virtualenv, which `dstack-iac ssh`
sources. All of it is removed before the teardown (and by `stop`).

The ssh config is one file rebuilt from one fragment per run (`ssh/runs/<run>.conf`) under a
lock, so concurrent runs never lose each other's entries; `ssh --setup` adds one `Include` line
of it to ~/.ssh/config and edits nothing else there.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from dstack_iac.config.models import PortMapping
from dstack_iac.execution.script import node_environment, resolve_working_dir
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.plan import RunPlan
from dstack_iac.paths import ensure_private_dir, run_dir, state_dir, write_private
from dstack_iac.runs.hooks import RunHook

if TYPE_CHECKING:
    from dstack_iac.runs.lifecycle import Run

ACCESS_FILE = "access.json"
NODE_ENV_FILE = "ssh_env.sh"
NODE_RC_FILE = "ssh_rc"


class RunAccess(BaseModel):
    """What reaching a run's nodes takes (no secret: the private key stays in its own file)."""

    run_name: str
    backend: str
    nodes: list[NodeEndpoint]
    # Each group's ports, by the rank they are forwarded from (the group's first node).
    ports_by_rank: dict[int, list[PortMapping]] = {}
    key_path: str
    known_hosts: str
    working_dirs: dict[int, str] = {}  # where the commands run, per rank

    def node(self, rank: int) -> NodeEndpoint:
        for node in self.nodes:
            if node.rank == rank:
                return node
        ranks = ", ".join(str(n.rank) for n in self.nodes)
        from dstack_iac.errors import BadInput

        raise BadInput(f"{self.run_name} has no node {rank} (its nodes: {ranks})")


def access_path(name: str) -> Path:
    return run_dir(name) / ACCESS_FILE


def load_access(name: str) -> RunAccess | None:
    try:
        return RunAccess.model_validate_json(access_path(name).read_text())
    except (OSError, ValueError):
        return None


# --- the ssh config ------------------------------------------------------------------------------

def ssh_dir() -> Path:
    return state_dir() / "ssh"


def ssh_config_path() -> Path:
    return ssh_dir() / "config"


def _ssh_quoted(path: str) -> str:
    """A path as ssh_config reads it: quoted (spaces), '%' doubled (these options expand tokens)."""
    text = path.replace("%", "%%")
    if '"' in text or "\n" in text:
        raise ValueError(f"ssh cannot be configured with a path holding a double quote or newline: {path}")
    return f'"{text}"'


def host_alias(run_name: str, rank: int) -> str:
    return f"{run_name}-{rank}"


def host_entries(access: RunAccess) -> str:
    """`Host <run>` (node 0) and `Host <run>-<rank>` blocks, each pinned to the run's known_hosts."""
    blocks = [f"# dstack-iac run {access.run_name}: removed when the run is torn down"]
    for node in sorted(access.nodes, key=lambda n: n.rank):
        names = [host_alias(access.run_name, node.rank)] + ([access.run_name] if node.rank == 0 else [])
        blocks.append("\n".join([
            f"Host {' '.join(names)}",
            f"    HostName {node.address}",
            f"    Port {node.port}",
            f"    User {node.user}",
            f"    IdentityFile {_ssh_quoted(access.key_path)}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {_ssh_quoted(access.known_hosts)}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    PasswordAuthentication no",
        ]))
    return "\n".join(blocks) + "\n"


class _SshConfigLock:
    def __enter__(self):
        ensure_private_dir(ssh_dir())
        self._fd = os.open(ssh_dir() / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self._fd)
        return False


def _fragments_dir() -> Path:
    return ssh_dir() / "runs"


def _rebuild_config() -> None:
    fragments = sorted(_fragments_dir().glob("*.conf")) if _fragments_dir().is_dir() else []
    header = "# Written by dstack-iac: one block per active run. Do not edit (it is rebuilt).\n"
    write_private(ssh_config_path(), header + "".join("\n" + f.read_text() for f in fragments))


def publish_ssh_entries(access: RunAccess) -> None:
    with _SshConfigLock():
        write_private(_fragments_dir() / f"{access.run_name}.conf", host_entries(access))
        _rebuild_config()


def withdraw(name: str) -> None:
    """The run's entries and access file go (its teardown, or `stop`): safe to repeat."""
    fragment = _fragments_dir() / f"{name}.conf"
    if fragment.exists():
        with _SshConfigLock():
            fragment.unlink(missing_ok=True)
            _rebuild_config()
    access_path(name).unlink(missing_ok=True)


# --- ~/.ssh/config -------------------------------------------------------------------------------

def include_line(config: Path | None = None) -> str:
    return f'Include "{config or ssh_config_path()}"'


def has_include(user_config: Path, config: Path | None = None) -> bool:
    wanted = str(config or ssh_config_path())
    try:
        lines = user_config.read_text().splitlines()
    except FileNotFoundError:
        return False
    for line in lines:
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].lower() == "include" and words[1].strip().strip('"') == wanted:
            return True
    return False


def add_include(user_config: Path, config: Path | None = None) -> bool:
    """Put the Include line first in `user_config` (where it applies to every host, before any
    `Host` block); nothing else changes. False when it is there already."""
    if has_include(user_config, config):
        return False
    user_config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = user_config.read_text() if user_config.exists() else ""
    mode = user_config.stat().st_mode & 0o777 if user_config.exists() else 0o600
    temporary = user_config.with_name(f".{user_config.name}.dstack-iac.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(include_line(config) + "\n" + existing)
    os.replace(temporary, user_config)
    return True


# --- on the nodes --------------------------------------------------------------------------------

def node_env_script(environment: Mapping[str, str], working_dir: str) -> str:
    """What `dstack-iac ssh` sources on a node: the run's variables, its working directory and
    its virtualenv (when the commands have made it)."""
    lines = ["# Written by dstack-iac: the run's environment, for `dstack-iac ssh`."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in environment.items()]
    lines += [f"cd {shlex.quote(working_dir)} 2>/dev/null || cd \"$HOME\"",
              'if [ -f "$DSTACK_VENV_DIR/bin/activate" ]; then . "$DSTACK_VENV_DIR/bin/activate"; fi']
    return "\n".join(lines) + "\n"


def node_rc_script(node_dir: str) -> str:
    """An interactive shell's rc file: the user's own, then the run's environment."""
    return (f'if [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n'
            f". {shlex.quote(node_dir + '/' + NODE_ENV_FILE)}\n")


def remote_command(node_dir: str, command: list[str]) -> str:
    """What the node's login shell runs for `dstack-iac ssh`: the run's environment, then the
    command (its words joined by spaces, as `ssh` joins them), or an interactive bash."""
    env_file = shlex.quote(f"{node_dir}/{NODE_ENV_FILE}")
    if command:
        return f". {env_file} && {' '.join(command)}"
    return f"exec bash --rcfile {shlex.quote(node_dir + '/' + NODE_RC_FILE)} -i"


def ports_by_rank(plan: RunPlan) -> dict[int, list[PortMapping]]:
    """Each group's ports, from its first node (as an attached run forwards them)."""
    return {group.first_rank: list(spec.ports) for group, spec in zip(plan.groups, plan.configuration.node_groups)
            if spec.ports}


def node_environments(plan: RunPlan, endpoints: list[NodeEndpoint]) -> dict[int, dict[str, str]]:
    """What the commands of each node see (its group's GPUs, the env with its secrets resolved),
    for `ssh`: the same values as the node script's."""
    ips = [e.private_address for e in endpoints]
    environments = {}
    for endpoint in endpoints:
        gpu = plan.offer_of(endpoint.rank).gpu
        environments[endpoint.rank] = node_environment(
            run_name=plan.run_name, rank=endpoint.rank, nodes_ips=ips,
            gpus_per_node=endpoint.gpus if endpoint.gpus is not None else gpu.count if gpu else 0,
            working_dir=resolve_working_dir(endpoint.working_dir, plan.configuration.working_dir),
            venv_dir=f"{endpoint.node_dir}/venv", user_env=plan.env())
    return environments


class AccessHook(RunHook):
    """Publishes the run's access once its nodes are ready; withdraws it before the teardown."""

    name = "SSH access"

    def nodes_ready(self, run: Run) -> None:
        plan = run.plan
        endpoints = sorted((s.endpoint for s in run.group.sessions), key=lambda e: e.rank)
        environments = node_environments(plan, endpoints)
        working_dirs = {rank: environment["DSTACK_WORKING_DIR"] for rank, environment in environments.items()}

        def write_env(session) -> None:
            endpoint = session.endpoint
            # Private to the run's user: the env may hold resolved secrets (as the node script does).
            session.put_private(node_env_script(environments[endpoint.rank], working_dirs[endpoint.rank]).encode(),
                                f"{endpoint.node_dir}/{NODE_ENV_FILE}")
            session.put_private(node_rc_script(endpoint.node_dir).encode(), f"{endpoint.node_dir}/{NODE_RC_FILE}")

        run.group.each(write_env).raise_first()
        access = RunAccess(run_name=plan.run_name, backend=plan.backend, nodes=endpoints,
                           ports_by_rank=ports_by_rank(plan), key_path=run.inputs.key_path,
                           known_hosts=str(run.inputs.known_hosts), working_dirs=working_dirs)
        write_private(access_path(plan.run_name), access.model_dump_json(indent=2))
        publish_ssh_entries(access)

    def ended(self, run: Run) -> None:
        withdraw(run.plan.run_name)
