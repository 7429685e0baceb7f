"""Pulumi's unit-test mocks for the cloud components: every registered resource and every
invoke is recorded, so tests check exactly what a real `pulumi up` would ask the cloud for."""

from __future__ import annotations

import pulumi
from pydantic import SecretStr

from dstack_iac.backends.cloud.spec import ClusterSpec, MountedVolume, NodeHostKey, RegistryLogin
from dstack_iac.model.offers import Offer

SECRET_SIG = "4dabf18193072939515e22adb298388d"
PASSWORD = "s3cr3t-registry-pa55"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "aws:ec2/instance:Instance":
            rank = len([r for r in self.resources if r.typ == args.typ]) - 1
            outputs.update(publicIp=f"203.0.113.{10 + rank}", privateIp=f"10.0.0.{10 + rank}")
        if args.typ == "gcp:compute/instance:Instance":
            rank = len([r for r in self.resources if r.typ == args.typ]) - 1
            outputs["networkInterfaces"] = [{"network": "default", "networkIp": f"10.128.0.{10 + rank}",
                                             "accessConfigs": [{"natIp": f"198.51.100.{10 + rank}"}]}]
        if args.typ == "aws:ec2/keyPair:KeyPair":
            outputs["keyName"] = args.name
        if args.typ == "aws:ec2/placementGroup:PlacementGroup":
            outputs["name"] = args.name
        return [f"{args.name}-id", outputs]

    def call(self, args):
        self.calls.append(args)
        if args.token == "aws:index/getAvailabilityZone:getAvailabilityZone":
            return {"name": "us-east-1b", "zoneId": args.args.get("zoneId")}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0123456789", "name": "mock image"}
        if args.token == "aws:ebs/getVolume:getVolume":
            return {"id": "vol-0abc123", "volumeId": "vol-0abc123"}
        if args.token == "gcp:compute/getDisk:getDisk":
            return {"selfLink": f"projects/p/zones/{args.args.get('zone')}/disks/{args.args.get('name')}"}
        return {}

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]


def unwrap(value):
    """A mocked input, with a secret's wrapper removed."""
    if isinstance(value, dict) and value.get(SECRET_SIG):
        return value["value"]
    return value


def is_secret(value) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def plain_occurrences(value, needle: str, path: str = "") -> list[str]:
    """Paths where `needle` appears outside any secret."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in plain_occurrences(v, needle, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in plain_occurrences(v, needle, f"{path}[{i}]")]
    return [path or "."] if needle in str(value) else []


def host_key() -> NodeHostKey:
    return NodeHostKey(public="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests",
                       private=SecretStr("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----"))


EXPIRES_AT = 1_800_000_000  # 2027-01-15T08:00:00Z


def cluster_spec(offer: Offer, nodes: int = 1, **extra) -> ClusterSpec:
    return ClusterSpec(**{"run_name": "train-run", "offer": offer, "nodes": nodes,
                          "authorized_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRunKey dstack-iac",
                          "host_keys": [host_key() for _ in range(nodes)], "ssh_cidr": "198.51.100.7/32",
                          "owner": "alice", "lease_seconds": 600, "expires_at": EXPIRES_AT, **extra})


def with_registry(offer: Offer, **extra) -> ClusterSpec:
    return cluster_spec(offer, image="registry.example.com/team/train:1",
                        registry=RegistryLogin(server="registry.example.com", username="bot",
                                               password=SecretStr(PASSWORD)), **extra)


def volume(name: str, path: str, rank: int = 0) -> MountedVolume:
    return MountedVolume(name=name, path=path, rank=rank)


def settle(cluster: pulumi.ComponentResource) -> pulumi.Output:
    """The cluster's nodes, once every resource the component declares is registered (outputs
    resolve as soon as their own inputs do, before unrelated siblings exist)."""
    children = []
    for value in vars(cluster).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, pulumi.CustomResource):
                children.append(item.id)
    return pulumi.Output.all(cluster.nodes, *children).apply(lambda values: values[0])
