"""A task's nodes as a Pulumi stack of its own: `pulumi preview` / `pulumi up` work directly.

    pulumi stack init dev
    pulumi config set configuration ../../examples/hello/.dstack.yml
    pulumi config set publicKey "$(cat ~/.ssh/id_ed25519.pub)"
    pulumi config set sshCidr 203.0.113.7/32      # aws and gcp
    pulumi config set plan plan.json              # optional: the plan reviewed with `dstack-iac preview --save-plan`
    pulumi preview --policy-pack ../../policies/dstack-iac-guardrails   # optional: the team's policy packs
"""

from pathlib import Path

import pulumi

from dstack_iac import task_cluster

config = pulumi.Config()
configuration = Path(config.require("configuration"))
if not configuration.is_absolute():
    configuration = Path(__file__).resolve().parent / configuration

reviewed = config.get("plan") or None  # a plan saved by `dstack-iac preview --save-plan FILE`
if reviewed and not Path(reviewed).is_absolute():
    reviewed = Path(__file__).resolve().parent / reviewed

cluster = task_cluster(
    "task", configuration, public_key=config.require("publicKey"), ssh_cidr=config.get("sshCidr") or None,
    run_name=pulumi.get_stack(), reviewed_plan=reviewed,
)
pulumi.export("nodes", cluster.nodes)
