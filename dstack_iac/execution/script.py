"""The bash script every node runs: environment, virtualenv, then the commands, stopping at the
first failing one. Pure: rendering only."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence


def node_environment(
    *, run_name: str, rank: int, nodes_ips: Sequence[str], gpus_per_node: int, working_dir: str, venv_dir: str,
    user_env: Mapping[str, str],
) -> dict[str, str]:
    return {
        **user_env,
        "DSTACK_RUN_NAME": run_name,
        "DSTACK_NODE_RANK": str(rank),
        "DSTACK_NODES_NUM": str(len(nodes_ips)),
        "DSTACK_MASTER_NODE_IP": nodes_ips[0],
        "DSTACK_NODES_IPS": "\n".join(nodes_ips),
        "DSTACK_GPUS_PER_NODE": str(gpus_per_node),
        "DSTACK_GPUS_NUM": str(gpus_per_node * len(nodes_ips)),
        "DSTACK_WORKING_DIR": working_dir,
        "DSTACK_VENV_DIR": venv_dir,
    }


def render_script(
    *, environment: Mapping[str, str], commands: Sequence[str], python: str, pip_cache_dir: str | None,
    shell: str | None = None,
) -> str:
    lines = ["#!/usr/bin/env bash", "# Written by dstack-iac: the task's commands on this node.", "set -e"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in environment.items()]
    if pip_cache_dir:
        lines.append(f"export PIP_CACHE_DIR={shlex.quote(pip_cache_dir)}")
    lines += [
        "export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1",
        'if [ ! -x "$DSTACK_VENV_DIR/bin/python" ]; then',
        f'  {shlex.quote(python)} -m venv "$DSTACK_VENV_DIR"',
        "fi",
        'source "$DSTACK_VENV_DIR/bin/activate"',
        'cd "$DSTACK_WORKING_DIR"',
    ]
    body = "\n".join(commands)
    if shell and shell not in ("bash", "/bin/bash", "/usr/bin/bash"):
        lines.append(f"exec {shlex.quote(shell)} -e -c {shlex.quote(body)}")
    else:
        lines.append(body)
    return "\n".join(lines) + "\n"
