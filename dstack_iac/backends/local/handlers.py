"""The provider side of the local backend's resources (served by `pulumi-resource-dstack-iac`):
what creating and deleting a node or a volume does on this machine.

A node is processes and a directory of the machine that created it, and a volume is a directory
there: each records that machine (`host_id`), and a provider on any other machine refuses to act
on them (a pid or a path means something else there), saying where to run the command instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dstack_iac.infra.provider import HandlerError, ResourceHandler
from dstack_iac.state.identity import host_id

NODE_TYPE = "dstack-iac:local:Node"
VOLUME_TYPE = "dstack-iac:local:Volume"
NODE_INPUTS = ("run_name", "rank", "node_dir", "user", "authorized_key", "address_base", "lease_seconds")


def _create_node(props: dict) -> tuple[str, dict]:
    from dstack_iac.backends.local.node import start_node

    inputs = {key: props.get(key) for key in NODE_INPUTS}
    # The engine carries numbers as floats.
    for number in ("rank", "address_base", "lease_seconds"):
        inputs[number] = int(inputs.get(number) or 0)
    outputs = start_node(**inputs)
    return f"{props['run_name']}-{inputs['rank']}", {**props, **outputs, "host_id": host_id()}


def check_host(what: str, props: dict) -> None:
    """Refuse to act on another machine's processes and paths. (Resources made before nodes
    recorded their machine carry none: they can only be this machine's, as before.)"""
    created_on = props.get("host_id")
    if created_on and created_on != host_id():
        raise HandlerError(f"{what} belongs to the machine {created_on}, not to this one ({host_id()}): its processes "
                           f"and files are there; run `dstack-iac stop` (or `volume delete`) on that machine")


def _delete_node(_id: str, props: dict) -> None:
    from dstack_iac.backends.local.node import stop_node

    check_host(f"local node {props.get('run_name')}-{props.get('rank')}", props)
    stop_node(props.get("directory") or props["node_dir"])


def _create_volume(props: dict) -> tuple[str, dict]:
    Path(props["directory"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    return props["volume_name"], {**props, "host_id": host_id()}


def _delete_volume(_id: str, props: dict) -> None:
    check_host(f"local volume {props.get('volume_name')}", props)
    shutil.rmtree(props["directory"], ignore_errors=True)


HANDLERS = (
    ResourceHandler(NODE_TYPE, _create_node, _delete_node, replace_on=NODE_INPUTS),
    ResourceHandler(VOLUME_TYPE, _create_volume, _delete_volume, replace_on=("volume_name", "directory")),
)
