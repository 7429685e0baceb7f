"""A run's SSH session to a fleet's host: the generic NodeSession, connected the fleet's way.

Three things differ from a node the package created itself: the host key is the one the fleet
pinned (named as known_hosts names it, port 22 included), the connection may go through the
fleet's jump host (a direct-tcpip channel, as `ssh -J`), and the commands get the fleet's `env`
and, on a host split into blocks, only their blocks' GPUs (CUDA_VISIBLE_DEVICES, or
ROCR_VISIBLE_DEVICES on AMD), set before the task's own env so the task's wins.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fabric
import paramiko

from dstack_iac.backends.ssh import hosts
from dstack_iac.backends.ssh.hosts import Target
from dstack_iac.execution.session import CONNECT_TIMEOUT, NodeSession
from dstack_iac.model.nodes import NodeEndpoint

VISIBLE_DEVICES = {"nvidia": ("CUDA_VISIBLE_DEVICES",), "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")}


def lease_environment(fleet_env: Mapping[str, str], gpu_vendor: str | None, gpu_indices: Sequence[int]) -> dict[str, str]:
    """What the fleet sets for every run on a host: its env, and the lease's GPUs when the host
    is shared between leases."""
    environment = dict(fleet_env)
    if gpu_indices:
        for name in VISIBLE_DEVICES.get(gpu_vendor or "", ()):
            environment[name] = ",".join(str(index) for index in gpu_indices)
    return environment


def with_environment(script: str, environment: Mapping[str, str], node_dir: str | None = None) -> str:
    """The node script with `environment` exported right after its first line: everything the
    script sets itself (the task's env, DSTACK_*) comes later, so it wins. With `node_dir`, the
    script first moves into the lease's cgroup when the host gave it one (remote.py
    make_cgroup): what it starts stays there, whatever its process group and environment."""
    first, _, rest = script.partition("\n")
    join = ""
    if node_dir is not None:
        cgroup_file = shlex.quote(f"{node_dir}/cgroup")
        join = (f'if [ -s {cgroup_file} ]; then {{ echo $$ > "$(cat {cgroup_file})/cgroup.procs"; }} 2>/dev/null '
                "|| true; fi\n")
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())
    if not join and not exports:
        return script
    return f"{first}\n{join}{exports}{rest}"


class SshSession(NodeSession):
    def __init__(self, endpoint: NodeEndpoint, key_path: Path, known_hosts: Path, *, target: Target,
                 environment: Mapping[str, str]):
        self.target = target
        self.environment = dict(environment)
        self._jumps: list[paramiko.SSHClient] = []
        super().__init__(endpoint, key_path, known_hosts)

    def _connect(self) -> fabric.Connection:
        sock = None
        if self.target.jump is not None:
            jump = hosts.connect(self.target.jump)  # the fleet's key for the jump host, its key pinned
            self._jumps.append(jump.client)
            sock = hosts.jump_channel(jump.client, self.target)
        connection = fabric.Connection(
            host=self.endpoint.address, user=self.endpoint.user, port=self.endpoint.port,
            connect_timeout=CONNECT_TIMEOUT,
            config=fabric.Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}}),
            connect_kwargs={"key_filename": [str(self.key_path)], "allow_agent": False, "look_for_keys": False,
                            "sock": sock},
        )
        hosts.pin(connection.client, self.endpoint.address, self.endpoint.port, self.target.host_key or "")
        try:
            connection.open()
        except BaseException:
            if self._jumps:  # the jump host's client would outlive the failed connection
                self._jumps.pop().close()
            raise
        return connection

    def run_script(self, script: str, *args: Any, **kwargs: Any) -> int:
        # Everything but the script is the generic session's business, passed through as is.
        return super().run_script(with_environment(script, self.environment, self.endpoint.node_dir), *args, **kwargs)

    def close(self) -> None:
        super().close()
        for client in self._jumps:
            client.close()
        self._jumps.clear()
