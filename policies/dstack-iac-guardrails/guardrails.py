"""Guardrails for dstack-iac runs, as a Pulumi CrossGuard policy pack a platform team starts from.

Every policy is mandatory unless the pack's config says otherwise (Pulumi's policy config, e.g.
`dstack-iac preview --policy-pack DIR --policy-pack-config limits.json`):

    {
      "max-price-per-hour": {"maxPricePerHour": 8},
      "max-nodes-per-run": {"maxNodes": 4},
      "allowed-instance-families": {"families": ["g5", "g6", "a2"]},
      "aws-imdsv2-required": "advisory"
    }

The checks are plain functions of a resource's type and properties (as the engine hands them to
the pack, camelCase), so they are tested without an engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

OFFER_TYPE = "dstack-iac:run:Offer"
DEFAULT_MAX_PRICE_PER_HOUR = 40.0
DEFAULT_MAX_NODES = 64
# Families of the GPU and general-purpose machines dstack tasks usually run on.
DEFAULT_FAMILIES = [
    "g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5", "t3", "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r6i",
    "n1", "n2", "n2d", "e2", "c2", "c3", "a2", "a3", "g2",
]
OPEN_TO_ALL = ("0.0.0.0/0", "::/0")
SSH_PORT = 22

Check = Callable[[str, Mapping[str, Any], Mapping[str, Any]], list[str]]


# --- the checks: (resource type, props, policy config) -> violation messages -------------------

def _covers_ssh(from_port: Any, to_port: Any, protocol: Any) -> bool:
    if str(protocol).lower() in ("-1", "all"):
        return True
    if str(protocol).lower() not in ("tcp", "6"):
        return False
    try:
        low, high = int(from_port), int(to_port)
    except (TypeError, ValueError):
        return True  # unknown ports: assume the worst
    return low <= SSH_PORT <= high or (low == 0 and high == 0)


def _open_to_all(cidr: Any) -> bool:
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    return network.prefixlen == 0


def _gcp_allows_ssh(allow: Iterable[Mapping[str, Any]]) -> bool:
    for rule in allow or []:
        protocol = str(rule.get("protocol", "")).lower()
        if protocol in ("all",):
            return True
        if protocol not in ("tcp", "6"):
            continue
        ports = rule.get("ports") or []
        if not ports:
            return True  # every port of the protocol
        for port in ports:
            low, _, high = str(port).partition("-")
            try:
                if int(low) <= SSH_PORT <= int(high or low):
                    return True
            except ValueError:
                return True
    return False


def ssh_never_from_anywhere(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    found = []
    if resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        for key in ("cidrIpv4", "cidrIpv6"):
            if _open_to_all(props.get(key)) and _covers_ssh(props.get("fromPort"), props.get("toPort"),
                                                             props.get("ipProtocol")):
                found.append(f"SSH is open to {props.get(key)}: allow only the caller's address (e.g. a /32)")
    elif resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule" and props.get("type") == "ingress":
        for cidr in [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])]:
            if _open_to_all(cidr) and _covers_ssh(props.get("fromPort"), props.get("toPort"), props.get("protocol")):
                found.append(f"SSH is open to {cidr}: allow only the caller's address (e.g. a /32)")
    elif resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in props.get("ingress") or []:
            for cidr in [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]:
                if _open_to_all(cidr) and _covers_ssh(rule.get("fromPort"), rule.get("toPort"), rule.get("protocol")):
                    found.append(f"SSH is open to {cidr} (inline ingress rule)")
    elif resource_type == "gcp:compute/firewall:Firewall":
        direction = str(props.get("direction") or "INGRESS").upper()
        sources = [*(props.get("sourceRanges") or [])]
        if direction == "INGRESS" and _gcp_allows_ssh(props.get("allows") or props.get("allow") or []):
            for cidr in sources:
                if _open_to_all(cidr):
                    found.append(f"SSH is open to {cidr}: allow only the caller's address (e.g. a /32)")
    return found


def aws_imdsv2_required(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource_type not in ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate"):
        return []
    options = props.get("metadataOptions") or {}
    if str(options.get("httpEndpoint", "enabled")).lower() == "disabled":
        return []
    if str(options.get("httpTokens", "")).lower() != "required":
        return ["the instance metadata service must require IMDSv2 tokens (metadataOptions.httpTokens: required)"]
    return []


def aws_encrypted_root_disk(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource_type == "aws:ec2/instance:Instance":
        root = props.get("rootBlockDevice") or {}
        if root.get("encrypted") is not True:
            return ["the root disk must be encrypted (rootBlockDevice.encrypted: true)"]
    if resource_type == "aws:ebs/volume:Volume" and props.get("encrypted") is not True:
        return ["EBS volumes must be encrypted (encrypted: true)"]
    return []


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def gcp_no_serial_port(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource_type in ("gcp:compute/instance:Instance", "gcp:compute/instanceTemplate:InstanceTemplate"):
        metadata = props.get("metadata") or {}
        if _truthy(metadata.get("serial-port-enable")):
            return ["serial-port access must stay off (metadata serial-port-enable)"]
    if resource_type == "gcp:compute/projectMetadataItem:ProjectMetadataItem":
        if props.get("key") == "serial-port-enable" and _truthy(props.get("value")):
            return ["serial-port access must stay off (project metadata serial-port-enable)"]
    return []


def max_price_per_hour(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource_type != OFFER_TYPE:
        return []
    limit = float(config.get("maxPricePerHour", DEFAULT_MAX_PRICE_PER_HOUR))
    total = float(props.get("totalPricePerHour") or 0)
    if total > limit:
        return [f"the run costs ${total:g}/hour ({int(props.get('nodes') or 0)} x {props.get('instanceType')} at "
                f"${float(props.get('pricePerHour') or 0):g}), over the limit of ${limit:g}/hour"]
    return []


def max_nodes_per_run(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """Any backend's, the user's own machines included: how many nodes one run may take."""
    if resource_type != OFFER_TYPE:
        return []
    limit = int(config.get("maxNodes", DEFAULT_MAX_NODES))
    nodes = int(props.get("nodes") or 0)
    if nodes > limit:
        return [f"the run asks for {nodes} nodes ({props.get('backend')}), over the limit of {limit} per run"]
    return []


def instance_family(instance_type: str) -> str:
    """g5.xlarge -> g5 (AWS); a2-highgpu-1g -> a2 (GCP); a machine type URL -> its last part."""
    name = str(instance_type).rsplit("/", 1)[-1]
    return name.split(".", 1)[0] if "." in name else name.split("-", 1)[0]


def allowed_instance_families(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    families = [str(f) for f in config.get("families", DEFAULT_FAMILIES)]
    if resource_type == OFFER_TYPE:
        if not props.get("rented"):
            return []  # machines the user has (local, SSH fleets) are not rented by family
        instance_type = props.get("instanceType")
    elif resource_type in ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate"):
        instance_type = props.get("instanceType")
    elif resource_type in ("gcp:compute/instance:Instance", "gcp:compute/instanceTemplate:InstanceTemplate"):
        instance_type = props.get("machineType")
    else:
        return []
    if not instance_type or not families:
        return []
    family = instance_family(instance_type)
    if family not in families:
        return [f"instance type {instance_type} (family {family}) is not allowed; allowed families: "
                f"{', '.join(families)}"]
    return []


# name -> (description, check, config schema)
POLICIES: dict[str, tuple[str, Check, dict[str, dict[str, Any]] | None]] = {
    "ssh-never-from-anywhere": ("SSH (port 22) is never open to 0.0.0.0/0 or ::/0.", ssh_never_from_anywhere, None),
    "aws-imdsv2-required": ("AWS instances require IMDSv2 (token-based metadata).", aws_imdsv2_required, None),
    "aws-encrypted-root-disk": ("AWS root disks and EBS volumes are encrypted.", aws_encrypted_root_disk, None),
    "gcp-no-serial-port": ("GCP instances never enable serial-port access.", gcp_no_serial_port, None),
    "max-price-per-hour": (
        "A run costs at most maxPricePerHour dollars per hour (all nodes).", max_price_per_hour,
        {"maxPricePerHour": {"type": "number", "default": DEFAULT_MAX_PRICE_PER_HOUR}}),
    "max-nodes-per-run": (
        "A run takes at most maxNodes nodes, on any backend.", max_nodes_per_run,
        {"maxNodes": {"type": "integer", "default": DEFAULT_MAX_NODES}}),
    "allowed-instance-families": (
        "Cloud instances belong to an allowed family (g5, a2, ...).", allowed_instance_families,
        {"families": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_FAMILIES}}),
}


def build_pack():
    """The PolicyPack (constructing it starts the analyzer the engine talks to)."""
    from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, PolicyPack, ReportViolation,
                               ResourceValidationArgs, ResourceValidationPolicy)

    def validation(check: Check):
        def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
            for message in check(args.resource_type, args.props, args.get_config() or {}):
                report_violation(message)

        return validate

    policies = [
        ResourceValidationPolicy(name=name, description=description, validate=validation(check),
                                 config_schema=PolicyConfigSchema(properties=schema) if schema else None)
        for name, (description, check, schema) in POLICIES.items()
    ]
    return PolicyPack(name="dstack-iac-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=policies)
