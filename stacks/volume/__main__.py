"""A volume as a Pulumi stack of its own (exports volume_id, availability_zone; local: directory).

    pulumi stack init dev
    pulumi config set configuration ../../examples/volumes/volume.dstack.yml
    pulumi up
"""

from pathlib import Path

import pulumi

from dstack_iac import volume

configuration = Path(pulumi.Config().require("configuration"))
if not configuration.is_absolute():
    configuration = Path(__file__).resolve().parent / configuration
volume(configuration)
