"""GCP: a run's nodes as one Pulumi component (pulumi-gcp), reusable in any Pulumi program.

Instances of the offer's machine type in its zone on the `default` network, with GPUs attached
as guest accelerators on n1 machines (a2/a3/g2 machine types have theirs built in), spot
scheduling for spot offers, persistent disks attached, and the same first-boot script as AWS
(as the startup-script). Firewall rules mirror AWS: SSH from the caller only, everything between
the run's own instances, no task port exposed.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from dstack_iac.backends.cloud.node_setup import render_node_setup
from dstack_iac.backends.cloud.spec import NODE_USER, ClusterSpec
from dstack_iac.backends.gcp.sweeper import firewall_name

UBUNTU_IMAGE = "ubuntu-os-cloud/ubuntu-2204-lts"
GPU_IMAGE = "deeplearning-platform-release/common-cu124-ubuntu-2204-py310"
NETWORK = "default"
# Catalog GPU name -> GCP accelerator type, for the GPUs attached to n1 machines.
N1_ACCELERATOR_TYPES = {"T4": "nvidia-tesla-t4", "P4": "nvidia-tesla-p4", "P100": "nvidia-tesla-p100",
                        "V100": "nvidia-tesla-v100"}


def gcp_label(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())[:63]


def persistent_disk_device_path(rank_index: int) -> str:
    return f"/dev/disk/by-id/google-dstack-volume-{rank_index}"


class GcpTaskCluster(pulumi.ComponentResource):
    """`spec.nodes` instances, their firewall rules and attached disks. Outputs `nodes`."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, spec: ClusterSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:gcp:TaskCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = spec.offer.availability_zone
        tag = f"dstack-iac-{spec.run_name}"
        labels = {gcp_label(key.replace(":", "-")): gcp_label(value) for key, value in spec.tags().items()
                  if key != "dstack-iac:expires-at"}
        if spec.expires_at:
            labels["dstack-iac-expires-at"] = str(spec.expires_at)  # label values allow no ':' (unix time)

        self.firewalls = [
            gcp.compute.Firewall(
                f"{name}-ssh", name=firewall_name(spec.run_name, "ssh"), network=NETWORK, direction="INGRESS",
                source_ranges=[spec.ssh_cidr],
                target_tags=[tag], allows=[{"protocol": "tcp", "ports": ["22"]}],
                description=f"dstack-iac run {spec.run_name}: SSH from the caller", opts=child),
            gcp.compute.Firewall(
                f"{name}-intra", name=firewall_name(spec.run_name, "intra"), network=NETWORK, direction="INGRESS",
                source_tags=[tag], target_tags=[tag],
                allows=[{"protocol": "all"}], description=f"dstack-iac run {spec.run_name}: between its nodes",
                opts=child),
        ]
        disks = [
            pulumi.Output.from_input(volume.volume_id) if volume.volume_id
            else gcp.compute.get_disk_output(name=volume.name, zone=zone, opts=pulumi.InvokeOptions(parent=self)).self_link
            for volume in spec.volumes
        ]
        password = spec.registry.password.get_secret_value() if spec.registry else ""
        devices = [persistent_disk_device_path(index) for index in range(len(spec.volumes))]

        self.instances = []
        for rank in range(spec.nodes):
            offer = spec.offer_of(rank)
            startup_script = pulumi.Output.secret(render_node_setup(spec, rank, devices, password))
            self.instances.append(gcp.compute.Instance(
                f"{name}-node-{rank}", name=f"dstack-iac-{spec.run_name}-{rank}", zone=zone,
                machine_type=offer.instance_type, tags=[tag], labels={**labels, "dstack-iac-rank": str(rank)},
                boot_disk={"auto_delete": True, "initialize_params": {
                    "image": GPU_IMAGE if spec.gpu else UBUNTU_IMAGE, "size": int(spec.disk_gb)}},
                network_interfaces=[{"network": NETWORK, "access_configs": [{}]}],
                guest_accelerators=_accelerators(offer), scheduling=_scheduling(offer, spec.has_gpu(rank)),
                reservation_affinity={"type": "SPECIFIC_RESERVATION", "specific_reservation": {
                    "key": "compute.googleapis.com/reservation-name", "values": [spec.reservation]}}
                if spec.reservation else None,
                attached_disks=[{"source": disk, "device_name": f"dstack-volume-{index}"}
                                for index, (volume, disk) in enumerate(zip(spec.volumes, disks)) if volume.rank == rank],
                # The run's own key only: no OS Login, no project-wide keys, no serial console.
                metadata={"ssh-keys": f"{NODE_USER}:{spec.authorized_key}", "startup-script": startup_script,
                          "enable-oslogin": "FALSE", "block-project-ssh-keys": "TRUE", "serial-port-enable": "FALSE"},
                # Both images are shielded-VM capable; secure boot would refuse the GPU image's driver.
                shielded_instance_config={"enable_secure_boot": not spec.gpu, "enable_vtpm": True,
                                          "enable_integrity_monitoring": True},
                allow_stopping_for_update=True, opts=child,
            ))
        self.node_outputs = [
            pulumi.Output.all(
                rank=rank, address=instance.network_interfaces[0].access_configs[0].nat_ip,
                private_address=instance.network_interfaces[0].network_ip, port=22, user=NODE_USER,
                host_key=spec.host_key(rank).public if spec.host_key(rank) else "", working_dir=spec.working_dir,
            )
            for rank, instance in enumerate(self.instances)
        ]
        self.nodes = pulumi.Output.all(*self.node_outputs)
        self.register_outputs({"nodes": self.nodes})


def _accelerators(offer) -> list[dict]:
    """N1 machines take their GPUs as accelerators; A2/A3/G2 types come with theirs."""
    if offer.gpu and offer.instance_type.startswith("n1-"):
        return [{"type": N1_ACCELERATOR_TYPES[offer.gpu.name], "count": offer.gpu.count}]
    return []


def _scheduling(offer, gpu: bool) -> dict:
    scheduling = {"on_host_maintenance": "TERMINATE" if gpu else "MIGRATE", "automatic_restart": not offer.spot}
    if offer.spot:
        scheduling.update(provisioning_model="SPOT", preemptible=True, instance_termination_action="DELETE",
                          on_host_maintenance="TERMINATE")
    return scheduling


class GcpVolume(pulumi.ComponentResource):
    """A zonal persistent disk named after the volume (runs attach it by name); or, with
    `volume_id`, an existing disk looked up (registered, never deleted)."""

    def __init__(self, name: str, *, volume_name: str, zone: str, size_gb: float | None = None,
                 volume_id: str | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:gcp:Volume", name, None, opts)
        if volume_id:
            existing = gcp.compute.get_disk_output(name=volume_id, zone=zone, opts=pulumi.InvokeOptions(parent=self))
            self.volume_id, self.availability_zone = existing.self_link, pulumi.Output.from_input(zone)
        else:
            disk = gcp.compute.Disk(name, name=volume_name, zone=zone, size=int(size_gb or 0), type="pd-balanced",
                                    labels={"dstack-iac-volume": gcp_label(volume_name)},
                                    opts=pulumi.ResourceOptions(parent=self))
            self.volume_id, self.availability_zone = disk.self_link, disk.zone
        self.register_outputs({"volume_id": self.volume_id, "availability_zone": self.availability_zone})
