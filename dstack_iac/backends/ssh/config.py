"""`type: fleet` in dstack's format for SSH fleets: machines the user already has, reached by SSH.

The file says how to reach each host (address, port, user, identity file, an optional jump host)
and how to share it (`blocks`); what a host has (CPUs, memory, disk, GPUs) is measured when the
fleet is created, never taken from the file. Fields of dstack's cloud fleets (`nodes`,
`backends`, ...) are refused with a message rather than accepted and ignored: dstack-iac
provisions SSH fleets only.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from dstack_iac.config.models import NAME_RE, FieldValueError, Model, ResourcesSpec, parse_env

DEFAULT_PORT = 22

# dstack's cloud-fleet fields: a fleet file naming them means a fleet this package does not make.
CLOUD_FLEET_FIELDS = ("nodes", "backends", "regions", "availability_zones", "instance_types", "spot_policy",
                      "retry", "max_price", "reservation", "idle_duration", "termination_policy",
                      "termination_idle_time", "tags")

Blocks = Union[int, Literal["auto"]]


def _check_port(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise ValueError(f"port {value} is outside 1..65535")
    return value


def _check_blocks(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, int) and value < 1):
        raise ValueError(f"blocks must be a whole number of at least 1, or auto (got {value!r})")
    return value


class ProxyJump(Model):
    """A jump host: connections to the fleet's hosts go through it (as `ssh -J`)."""

    hostname: str = Field(description="Address of the jump host, as this machine reaches it.")
    port: int = Field(default=DEFAULT_PORT, description="SSH port of the jump host.")
    user: str = Field(description="User on the jump host.")
    identity_file: str = Field(description="Private key for the jump host (read when connecting, never copied).")

    _port = field_validator("port")(lambda cls, value: _check_port(value))


class HostSpec(Model):
    """One host: an address, or a mapping that overrides `ssh_config`'s defaults for it."""

    hostname: str = Field(description="Address of the host (as this machine, or the jump host, reaches it).")
    port: int | None = Field(default=None, description="SSH port; ssh_config.port (default 22) when unset.")
    user: str | None = Field(default=None, description="User to log in as; ssh_config.user when unset.")
    identity_file: str | None = Field(default=None, description="Private key for this host; ssh_config.identity_file "
                                                                "when unset. Read when connecting, never copied.")
    proxy_jump: ProxyJump | None = Field(default=None, description="A jump host for this host; ssh_config.proxy_jump "
                                                                   "when unset.")
    internal_ip: str | None = Field(default=None, description="The address the run's nodes reach this host at "
                                                              "(DSTACK_NODES_IPS); the address SSH arrived at when "
                                                              "unset.")
    blocks: Blocks | None = Field(default=None, description="Split the host into this many blocks (its GPUs, CPUs "
                                                            "and memory divided evenly), each leased on its own; "
                                                            "auto means one per GPU. The fleet's blocks when unset.")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"hostname": value} if isinstance(value, str) else value

    _port = field_validator("port")(lambda cls, value: _check_port(value))
    _blocks = field_validator("blocks", mode="before")(lambda cls, value: _check_blocks(value))

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() or c in ",[]" for c in value):
            raise ValueError(f"{value!r} is not a host address")
        return value

    @field_validator("internal_ip")
    @classmethod
    def _internal_ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"internal_ip {value!r} is not an IP address") from None
        return value


class SshConfig(Model):
    """How to reach the hosts: defaults for every host, and the hosts."""

    user: str | None = Field(default=None, description="User to log in as on every host (a host may override it).")
    port: int | None = Field(default=None, description="SSH port of every host (default 22).")
    identity_file: str | None = Field(default=None, description="Private key for every host (read when connecting, "
                                                                "never copied into dstack-iac's state or logs).")
    proxy_jump: ProxyJump | None = Field(default=None, description="A jump host every connection goes through.")
    network: str | None = Field(default=None, description="A network (CIDR, e.g. 10.0.0.0/24): each host's address "
                                                          "in it is how the run's nodes reach each other.")
    hosts: list[HostSpec] = Field(description="The hosts: addresses, or mappings with hostname and overrides.")

    _port = field_validator("port")(lambda cls, value: _check_port(value))

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                return str(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ValueError(f"network {value!r} is not a CIDR block such as 10.0.0.0/24") from None
        return value

    @field_validator("hosts")
    @classmethod
    def _some_hosts(cls, value: list[HostSpec]) -> list[HostSpec]:
        if not value:
            raise ValueError("a fleet needs at least one host")
        return value


class ResolvedHost(BaseModel):
    """A host with the fleet's defaults applied: everything needed to reach and share it."""

    model_config = ConfigDict(frozen=True)

    label: str  # how tables, plans and errors name the host: its hostname (with the port when needed)
    hostname: str
    port: int
    user: str
    identity_file: str
    proxy_jump: ProxyJump | None = None
    internal_ip: str | None = None
    blocks: Blocks = 1

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"


class FleetConfiguration(Model):
    """`type: fleet`: an SSH fleet, its own long-lived stack (`fleet-<name>`)."""

    type: Literal["fleet"] = Field(description="Always `fleet` for a fleet file.")
    name: str = Field(description="2-41 lowercase letters, digits or '-'; the fleet's stack is fleet-<name>.")
    ssh_config: SshConfig = Field(description="The hosts and how to reach them over SSH.")
    placement: Literal["any", "cluster"] = Field(default="any", description="cluster: the hosts reach each other "
                                                                            "(needed for multi-node tasks); any: "
                                                                            "they may not.")
    blocks: Blocks = Field(default=1, description="Default blocks of every host: split each host into this many "
                                                  "leases (auto: one per GPU).")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables set for every run on the "
                                                                  "fleet (a task's own env wins): KEY=VALUE, or KEY "
                                                                  "to take the value from your environment.")
    resources: ResourcesSpec | None = Field(default=None, description="Ignored, as in dstack's SSH fleets: what each "
                                                                      "host has is measured when the fleet is "
                                                                      "created (a note says so).")

    @model_validator(mode="before")
    @classmethod
    def _ssh_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in CLOUD_FLEET_FIELDS:
                if key in value:
                    raise FieldValueError((key,), f"{key} is a field of dstack's cloud fleets: dstack-iac provisions "
                                                  "SSH fleets only (give ssh_config with the hosts; runs pick "
                                                  "their backend themselves)")
            if "ssh_config" not in value:
                raise FieldValueError(("type",), "dstack-iac provisions SSH fleets only: give ssh_config with the "
                                                 "hosts (user, identity_file, hosts)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name: 2-41 lowercase letters, digits or '-', starting with a letter")
        return value

    _blocks = field_validator("blocks", mode="before")(lambda cls, value: _check_blocks(value))

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any, info: ValidationInfo) -> Any:
        return parse_env(value, (info.context or {}).get("caller_env", os.environ))

    @model_validator(mode="after")
    def _reachable(self) -> FleetConfiguration:
        config = self.ssh_config
        seen: dict[tuple[str, int], int] = {}
        for index, host in enumerate(config.hosts):
            where = ("ssh_config", "hosts", index)
            if (host.user or config.user) is None:
                raise FieldValueError(where, f"host {host.hostname}: no user to log in as: set ssh_config.user or "
                                             "the host's user")
            if (host.identity_file or config.identity_file) is None:
                raise FieldValueError(where, f"host {host.hostname}: no identity_file: set ssh_config.identity_file "
                                             "or the host's identity_file")
            key = (host.hostname, host.port or config.port or DEFAULT_PORT)
            if key in seen:
                raise FieldValueError(where, f"host {key[0]}:{key[1]} is listed twice (hosts {seen[key]} and {index})")
            seen[key] = index
        return self

    def resolved_hosts(self, base_dir: Path | None = None) -> list[ResolvedHost]:
        """The hosts with defaults applied. Identity files: `~` expanded, and a relative path is
        relative to `base_dir` (the fleet file's directory)."""
        config = self.ssh_config
        names = [host.hostname for host in config.hosts]
        resolved = []
        for host in config.hosts:
            port = host.port or config.port or DEFAULT_PORT
            jump = host.proxy_jump or config.proxy_jump
            if jump is not None:
                jump = jump.model_copy(update={"identity_file": _key_path(jump.identity_file, base_dir)})
            resolved.append(ResolvedHost(
                label=host.hostname if names.count(host.hostname) == 1 else f"{host.hostname}:{port}",
                hostname=host.hostname, port=port, user=host.user or config.user,
                identity_file=_key_path(host.identity_file or config.identity_file, base_dir),
                proxy_jump=jump, internal_ip=host.internal_ip,
                blocks=host.blocks if host.blocks is not None else self.blocks,
            ))
        return resolved

    def identity_field(self, index: int) -> str:
        """The field that gave host `index` its identity file (for positioned errors)."""
        if self.ssh_config.hosts[index].identity_file:
            return f"ssh_config.hosts[{index}].identity_file"
        return "ssh_config.identity_file"


def _key_path(path: str, base_dir: Path | None) -> str:
    expanded = Path(path).expanduser()
    if not expanded.is_absolute() and base_dir is not None:
        expanded = base_dir / expanded
    return str(expanded)
