"""`schema`: the JSON Schema of `.dstack.yml` files (for editors)."""

from __future__ import annotations

import json
import sys


def schema() -> None:
    """Print the JSON Schema of .dstack.yml files: tasks, volumes, fleets (for editors)."""
    from dstack_iac.backends.registry import configuration_types
    from dstack_iac.config.schema import configuration_json_schema

    sys.stdout.write(json.dumps(configuration_json_schema(configuration_types()), indent=2) + "\n")
