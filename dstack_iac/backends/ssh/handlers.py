"""The provider side of the ssh backend's resources (served by `pulumi-resource-dstack-iac`).

    dstack-iac:ssh:Host       a host of a fleet (stack `fleet-<name>`): reached once, its host key
                              recorded (trust on first use), its inventory measured. Writes
                              nothing on the host, so deleting it does nothing there.
    dstack-iac:ssh:HostLease  one node of a run (the run's stack): the run's lease on a host:
                              its run directory (holding its locks and caches), the run's
                              key, its cgroup when one can be made, a watchdog. Deleting it
                              releases all of that; a host that cannot be reached fails the
                              delete, naming the host, and `dstack-iac stop RUN` finishes later.

Standard library and paramiko only (no pulumi here). Numbers arrive from the engine as floats.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dstack_iac.backends.ssh import leases
from dstack_iac.backends.ssh.hosts import PROGRAM, HostError, Target, connect, fingerprint
from dstack_iac.infra.provider import ResourceHandler

HOST_TYPE = "dstack-iac:ssh:Host"
LEASE_TYPE = "dstack-iac:ssh:HostLease"
HOST_INPUTS = ("fleet", "target", "internal_ip", "network", "blocks")
LEASE_INPUTS = ("run_name", "rank", "fleet", "target", "locks", "blocks", "gpu_indices", "authorized_key",
                "lease_seconds", "run_dir", "private_address")
# What an error says when a host is held by another run: the backend recognises it as "no
# capacity", so `retry: no-capacity` waits for the host.
BUSY_MARKER = "no free capacity on fleet"


def block_count(blocks: Any, gpus: int, cpus: int) -> int:
    """How many leases the host is split into: `auto` is one per GPU (one for a host without)."""
    if blocks in (None, "auto"):
        return max(1, gpus) if blocks == "auto" else 1
    count = int(blocks)
    if gpus and gpus % count:
        raise ValueError(f"blocks: {count} does not divide its {gpus} GPUs evenly")
    if not gpus and count > cpus:
        raise ValueError(f"blocks: {count} is more than its {cpus} CPUs")
    return count


def missing_tools(tools: dict) -> str | None:
    """Why a host cannot take runs, from what its inventory found working (None: it can)."""
    if not tools.get("bash", True):
        return "bash is not installed (the node script of every run is bash)"
    lacking = [what for name, what in (("stat", "`stat -c %Y` (GNU coreutils)"), ("date", "`date +%s`"))
               if not tools.get(name, True)]
    if lacking:
        return (f"{' and '.join(lacking)} did not work there; the watchdog that ends a run's lease when it is "
                "not renewed needs them (install GNU coreutils)")
    return None


def _private_address(props: dict, inventory: dict, target: Target) -> str:
    """How the run's nodes reach this host: internal_ip, else its address in `network`, else the
    address its SSH session arrived at, else its hostname."""
    if props.get("internal_ip"):
        return str(props["internal_ip"])
    if props.get("network"):
        network = ipaddress.ip_network(props["network"], strict=False)
        for address in inventory.get("addresses") or []:
            try:
                if ipaddress.ip_address(address) in network:
                    return address
            except ValueError:
                continue
        raise HostError(f"{target.describe()}: none of its addresses ({', '.join(inventory.get('addresses') or []) or 'none found'}) "
                        f"is in ssh_config.network {props['network']}")
    return inventory.get("address") or target.hostname


def _create_host(props: dict) -> tuple[str, dict]:
    target = Target.from_props(props["target"])
    connection = connect(target, first_use=True)
    try:
        inventory = connection.call("inventory", {})
    finally:
        connection.close()
    lacking = missing_tools(inventory.get("tools") or {})
    if lacking:
        raise HostError(f"{target.describe()}: {lacking}")
    try:
        blocks = block_count(props.get("blocks"), len(inventory.get("gpus") or []), int(inventory.get("cpus") or 1))
    except ValueError as exc:
        raise HostError(f"{target.describe()}: {exc}") from None
    host_key, jump_key = connection.seen.get("host", ""), connection.seen.get("jump") or None
    outputs = {
        **props,
        "host_key": host_key,
        "fingerprint": fingerprint(host_key),
        "jump_host_key": jump_key,
        "jump_fingerprint": fingerprint(jump_key) if jump_key else None,
        "inventory": inventory,
        "private_address": _private_address(props, inventory, target),
        "block_count": blocks,
    }
    return f"{props['fleet']}/{target.label}", outputs


def _delete_host(_id: str, _props: dict) -> None:
    """Creating a fleet's host wrote nothing on it: there is nothing to remove."""


def _create_lease(props: dict) -> tuple[str, dict]:
    run, rank, fleet = str(props["run_name"]), int(props["rank"]), str(props["fleet"])
    target = Target.from_props(props["target"])
    marker = {"run": run, "rank": rank, "fleet": fleet, "label": target.label, "target": target.as_props(),
              "locks": list(props.get("locks") or []), "blocks": [int(b) for b in props.get("blocks") or []],
              "gpu_indices": [int(i) for i in props.get("gpu_indices") or []], "gpu_vendor": props.get("gpu_vendor"),
              "directory": None}
    # Recorded before the host is touched: a lease cut short is still found and released.
    leases.write_marker(props["run_dir"], rank, marker)
    try:
        connection = connect(target)
    except HostError:
        leases.marker_path(props["run_dir"], rank).unlink(missing_ok=True)
        raise
    try:
        answer = connection.call("acquire", {"run": run, "rank": rank, "locks": marker["locks"],
                                             "public_key": props["authorized_key"],
                                             "lease_seconds": int(props.get("lease_seconds") or 0),
                                             "program": PROGRAM})
    finally:
        connection.close()
    if answer.get("busy"):
        leases.marker_path(props["run_dir"], rank).unlink(missing_ok=True)
        what = "it" if answer["busy"] == "host" else f"its {answer['busy']}"
        raise HostError(f"{target.describe()} is busy: {what} is leased by {answer.get('owner') or 'another run'} "
                        f"({BUSY_MARKER} {fleet})")
    leases.write_marker(props["run_dir"], rank, {**marker, "directory": answer["directory"],
                                                 "host_dir": answer["host_dir"]})
    outputs = {
        **props,
        "address": target.hostname,
        "private_address": props.get("private_address") or answer.get("address") or target.hostname,
        "port": target.port,
        "user": target.user,
        "host_key": target.host_key,
        "directory": answer["directory"],
        "working_dir": answer["working_dir"],
        "host_dir": answer["host_dir"],
        "gpus": int(props.get("gpus") or 0),
    }
    return f"{run}-{rank}@{target.label}", outputs


def _delete_lease(_id: str, props: dict) -> None:
    run, rank = str(props["run_name"]), int(props["rank"])
    leases.release(Target.from_props(props["target"]), run, rank)
    leases.marker_path(props["run_dir"], rank).unlink(missing_ok=True)


HANDLERS = (
    ResourceHandler(HOST_TYPE, _create_host, _delete_host, replace_on=HOST_INPUTS),
    ResourceHandler(LEASE_TYPE, _create_lease, _delete_lease, replace_on=LEASE_INPUTS),
)
