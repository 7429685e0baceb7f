"""The provider side of the local backend's resources (served by `pulumi-resource-dstack-iac`):
what creating and deleting a node or a volume does on this machine."""

from __future__ import annotations

import shutil
from pathlib import Path

from dstack_iac.infra.provider import ResourceHandler

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
    return f"{props['run_name']}-{inputs['rank']}", {**props, **outputs}


def _delete_node(_id: str, props: dict) -> None:
    from dstack_iac.backends.local.node import stop_node

    stop_node(props.get("directory") or props["node_dir"])


def _create_volume(props: dict) -> tuple[str, dict]:
    Path(props["directory"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    return props["volume_name"], dict(props)


def _delete_volume(_id: str, props: dict) -> None:
    shutil.rmtree(props["directory"], ignore_errors=True)


HANDLERS = (
    ResourceHandler(NODE_TYPE, _create_node, _delete_node, replace_on=NODE_INPUTS),
    ResourceHandler(VOLUME_TYPE, _create_volume, _delete_volume, replace_on=("volume_name", "directory")),
)
