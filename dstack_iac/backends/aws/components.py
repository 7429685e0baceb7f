"""AWS: a run's nodes as one Pulumi component (pulumi-aws), reusable in any Pulumi program.

    from dstack_iac import AwsTaskCluster, ClusterSpec
    cluster = AwsTaskCluster("train", ClusterSpec(...))
    pulumi.export("nodes", cluster.nodes)

Everything is placed in the offer's region (pulumi-aws v7's per-resource `region`) and zone, in
the default VPC. Task ports are never opened: they are reached through SSH tunnels.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from dstack_iac.backends.cloud.node_setup import render_node_setup
from dstack_iac.backends.cloud.spec import NODE_USER, ClusterSpec

# Canonical's and Amazon's AMI owner ids, and the image names looked up by filter.
UBUNTU_OWNER = "099720109477"
UBUNTU_IMAGE = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
GPU_IMAGE_OWNER = "amazon"
GPU_IMAGE = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
VOLUME_DEVICES = [f"/dev/sd{letter}" for letter in "fghijklmnop"]


def ebs_device_path(volume_id: str) -> str:
    """Nitro instances expose EBS as NVMe: the stable path carries the volume id without '-'."""
    return f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"


class AwsTaskCluster(pulumi.ComponentResource):
    """`spec.nodes` instances of the offer, their security group, key pair and volumes.

    Outputs: `nodes` (per rank: address, private_address, port, user, host_key, working_dir),
    the same contract as every backend."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, spec: ClusterSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:aws:TaskCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = spec.offer.region
        tags = {**spec.tags(), "Name": f"dstack-iac-{spec.run_name}"}

        if spec.availability_zone_name:
            zone_name = pulumi.Output.from_input(spec.availability_zone_name)
        elif spec.offer.availability_zone:  # the catalog knows AZ ids; resources want names
            zone_name = aws.get_availability_zone_output(zone_id=spec.offer.availability_zone, region=region,
                                                         opts=pulumi.InvokeOptions(parent=self)).name
        else:
            zone_name = None

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", region=region, description=f"dstack-iac run {spec.run_name}: SSH from the caller only",
            tags=tags, opts=child)
        group_id = self.security_group.id
        self.rules = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-ssh", region=region, security_group_id=group_id, ip_protocol="tcp", from_port=22,
                to_port=22, cidr_ipv4=spec.ssh_cidr, description="SSH from the caller", tags=tags, opts=child),
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-intra", region=region, security_group_id=group_id, ip_protocol="-1",
                referenced_security_group_id=group_id, description="all traffic between the run's nodes",
                tags=tags, opts=child),
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-egress", region=region, security_group_id=group_id, ip_protocol="-1",
                cidr_ipv4="0.0.0.0/0", description="outbound (packages, images, data)", tags=tags, opts=child),
        ]
        self.key_pair = aws.ec2.KeyPair(f"{name}-key", region=region, public_key=spec.authorized_key, tags=tags,
                                        opts=child)
        self.placement_group = (
            aws.ec2.PlacementGroup(f"{name}-placement", region=region, strategy="cluster", tags=tags, opts=child)
            if spec.nodes > 1 else None
        )
        ami = aws.ec2.get_ami_output(
            most_recent=True, region=region,
            owners=[GPU_IMAGE_OWNER if spec.gpu else UBUNTU_OWNER],
            filters=[{"name": "name", "values": [GPU_IMAGE if spec.gpu else UBUNTU_IMAGE]},
                     {"name": "architecture", "values": ["x86_64"]}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        volume_ids = [
            pulumi.Output.from_input(volume.volume_id) if volume.volume_id else aws.ebs.get_volume_output(
                region=region, most_recent=True,
                filters=[{"name": "tag:Name", "values": [volume.name]}]
                + ([{"name": "availability-zone", "values": [zone_name]}] if zone_name is not None else []),
                opts=pulumi.InvokeOptions(parent=self)).volume_id
            for volume in spec.volumes
        ]
        password = spec.registry.password.get_secret_value() if spec.registry else ""

        self.instances = []
        for rank in range(spec.nodes):
            # The script holds the host key and the registry password: a secret from the start.
            user_data = pulumi.Output.secret(
                pulumi.Output.all(*volume_ids).apply(
                    lambda ids, rank=rank: render_node_setup(spec, rank, [ebs_device_path(i) for i in ids], password)))
            offer = spec.offer_of(rank)
            market = None
            if offer.spot:
                market = {"market_type": "spot", "spot_options": {
                    "spot_instance_type": "one-time", "instance_interruption_behavior": "terminate"}}
            self.instances.append(aws.ec2.Instance(
                f"{name}-node-{rank}", region=region, ami=ami.id, instance_type=offer.instance_type,
                availability_zone=zone_name, key_name=self.key_pair.key_name,
                vpc_security_group_ids=[group_id], associate_public_ip_address=True,
                placement_group=self.placement_group.name if self.placement_group else None,
                root_block_device={"volume_size": int(spec.disk_gb), "volume_type": "gp3", "encrypted": True,
                                   "delete_on_termination": True},
                # IMDSv2 only; a container is one hop further from the metadata service than the host.
                metadata_options={"http_tokens": "required", "http_endpoint": "enabled",
                                  "http_put_response_hop_limit": 2 if spec.image else 1},
                # The lease's shutdown (or any shutdown) ends the instance and its billing.
                instance_initiated_shutdown_behavior="terminate",
                instance_market_options=market, user_data=user_data, user_data_replace_on_change=True,
                capacity_reservation_specification={"capacity_reservation_target": {
                    "capacity_reservation_id": spec.reservation}} if spec.reservation else None,
                tags={**tags, "Name": f"dstack-iac-{spec.run_name}-{rank}", "dstack-iac:rank": str(rank)},
                volume_tags=tags, opts=child,
            ))
        # A network volume attaches to one instance: multi-node runs name one volume per node
        # (`${{ dstack.node_rank }}`), which planning resolves into spec.volumes with their rank.
        self.attachments = [
            aws.ec2.VolumeAttachment(
                f"{name}-volume-{index}", region=region, device_name=VOLUME_DEVICES[index], volume_id=volume_id,
                instance_id=self.instances[volume.rank].id, opts=child)
            for index, (volume, volume_id) in enumerate(zip(spec.volumes, volume_ids))
        ]
        self.node_outputs = [
            pulumi.Output.all(
                rank=rank, address=instance.public_ip, private_address=instance.private_ip, port=22, user=NODE_USER,
                host_key=spec.host_key(rank).public if spec.host_key(rank) else "", working_dir=spec.working_dir,
            )
            for rank, instance in enumerate(self.instances)
        ]
        self.nodes = pulumi.Output.all(*self.node_outputs)
        self.register_outputs({"nodes": self.nodes})


class AwsVolume(pulumi.ComponentResource):
    """An EBS volume (gp3) tagged with its name, so runs find it; or, with `volume_id`, an existing
    one looked up (registered, never deleted). Outputs: volume_id, availability_zone."""

    def __init__(self, name: str, *, volume_name: str, region: str, availability_zone: str,
                 size_gb: float | None = None, volume_id: str | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:aws:Volume", name, None, opts)
        if volume_id:
            existing = aws.ebs.get_volume_output(region=region, filters=[{"name": "volume-id", "values": [volume_id]}],
                                                 opts=pulumi.InvokeOptions(parent=self))
            self.volume_id, self.availability_zone = existing.volume_id, existing.availability_zone
        else:
            volume = aws.ebs.Volume(
                name, region=region, availability_zone=availability_zone, size=int(size_gb or 0), type="gp3",
                encrypted=True, tags={"Name": volume_name, "dstack-iac:volume": volume_name},
                opts=pulumi.ResourceOptions(parent=self))
            self.volume_id, self.availability_zone = volume.id, volume.availability_zone
        self.register_outputs({"volume_id": self.volume_id, "availability_zone": self.availability_zone})
