"""Planning on fleets (pure): which hosts and blocks a task's nodes get, what counts as free, and
the reasons when nothing fits."""

from __future__ import annotations

import pytest

from dstack_iac.backends.ssh import allocation
from dstack_iac.backends.ssh.records import FleetRecord, GpuInventory, HostRecord, Inventory, LeaseMarker
from dstack_iac.config.models import TaskConfiguration


def host(label: str, cpus: int = 16, memory: float = 64, gpus: int = 0, blocks: int = 1, name: str = "NVIDIA A100-SXM4-80GB",
         pythons: tuple[str, ...] = ()) -> HostRecord:
    inventory = Inventory(hostname=label, os="Ubuntu 22.04", arch="x86", cpus=cpus, memory_gb=memory, disk_gb=500,
                          gpus=[GpuInventory(vendor="nvidia", index=i, name=name, memory_gb=80, compute_capability="8.0")
                                for i in range(gpus)],
                          python="3.10", pythons={v: f"/usr/bin/python{v}" for v in pythons}, host_dir="/h",
                          authorized_keys="/k")
    return HostRecord(label=label, hostname=label, port=22, user="u", identity_file="/k", private_address=label,
                      blocks=blocks, host_key="ssh-ed25519 AAAA", fingerprint="SHA256:x", inventory=inventory)


def fleet(*hosts: HostRecord, placement: str = "cluster") -> FleetRecord:
    return FleetRecord(name="lab", configuration="f", placement=placement, hosts=list(hosts), created_at=0)


def task(**fields) -> TaskConfiguration:
    return TaskConfiguration.model_validate({"type": "task", "commands": ["x"], **fields})


def lease(run: str, label: str, blocks: list[int]) -> LeaseMarker:
    return LeaseMarker(run=run, rank=0, fleet="lab", label=label, target={}, blocks=blocks)


def test_nodes_get_hosts_of_their_own_gpu_hosts_left_to_gpu_tasks():
    lab = fleet(host("gpu-1", gpus=8), host("cpu-1"), host("cpu-2"))
    placements, _ = allocation.place(task(nodes=2), lab, {}, wait=False)
    assert allocation.encode(placements) == "cpu-1,cpu-2"
    placements, _ = allocation.place(task(resources={"gpu": "A100:8"}), lab, {}, wait=False)
    assert allocation.encode(placements) == "gpu-1"
    offer = allocation.offer("ssh", lab, placements)
    assert (offer.region, offer.price, offer.gpu.count, offer.gpu.name) == ("lab", 0.0, 8, "A100")


def test_blocks_split_a_host_and_a_node_takes_the_fewest_that_fit():
    lab = fleet(host("gpu-1", cpus=32, memory=256, gpus=8, blocks=4))
    placements, _ = allocation.place(task(resources={"gpu": "A100:2"}), lab, {}, wait=False)
    assert allocation.encode(placements) == "gpu-1[0]" and placements[0].gpu_indices == [0, 1]
    placements, _ = allocation.place(task(resources={"gpu": "A100:4", "cpu": "16.."}), lab,
                                     {"gpu-1": [lease("other", "gpu-1", [0])]}, wait=False)
    assert allocation.encode(placements) == "gpu-1[1,2]" and placements[0].gpu_indices == [2, 3, 4, 5]
    assert (placements[0].cpus, placements[0].memory_gb) == (16, 128.0)
    assert allocation.decode("gpu-1[1,2],cpu-1") == [("gpu-1", [1, 2]), ("cpu-1", [])]


def test_busy_hosts_are_refused_naming_their_runs_or_waited_for_with_retry():
    lab = fleet(host("box-1"))
    busy = {"box-1": [lease("first", "box-1", [0])]}
    placements, reasons = allocation.place(task(), lab, busy, wait=False)
    assert placements is None
    assert "0 of the 1 hosts that can take the task are free, it needs 1 (in use by first)" in reasons[0]
    assert "retry: {on_events: [no-capacity]}" in reasons[0]
    placements, _ = allocation.place(task(), lab, busy, wait=True)
    assert allocation.encode(placements) == "box-1"


@pytest.mark.parametrize("fields,expected", [
    ({"resources": {"cpu": 64}}, "box-1: cpu: asks for 64, it has 16"),
    ({"resources": {"memory": "1TB"}}, "box-1: memory: asks for 1024GB, it has 64.0GB"),
    ({"resources": {"gpu": "H100"}}, "box-1: gpu: asks for H100:1, it has no GPU"),
    ({"resources": {"cpu": "arm:2.."}}, "box-1: cpu: asks for arm, it is x86"),
    ({"python": "3.12"}, "box-1: python: asks for 3.12, it has 3.10"),
])
def test_what_no_host_has_is_said(fields, expected):
    placements, reasons = allocation.place(task(**fields), fleet(host("box-1")), {}, wait=False)
    assert placements is None and expected in reasons[1], reasons


def test_a_multi_node_task_needs_a_cluster_fleet_and_enough_hosts():
    _, reasons = allocation.place(task(nodes=2), fleet(host("a"), host("b"), placement="any"), {}, wait=False)
    assert "placement: any, and a multi-node task needs placement: cluster" in reasons[0]
    _, reasons = allocation.place(task(nodes=3), fleet(host("a"), host("b")), {}, wait=False)
    assert "only 2 of its hosts can take the task, it needs 3" in reasons[0]


@pytest.mark.parametrize("reported,model", [
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA GeForce RTX 4090", "RTX4090"),
    ("Tesla V100-SXM2-16GB", "V100"), ("NVIDIA L40S", "L40S"), ("AMD Instinct MI300X", "MI300X"),
])
def test_gpu_names_match_the_model_whatever_the_vendors_spelling(reported, model):
    lab = fleet(host("g", gpus=1, name=reported))
    placements, _ = allocation.place(task(resources={"gpu": f"{model.lower()}:1"}), lab, {}, wait=False)
    assert allocation.encode(placements) == "g"


def test_instances_pick_hosts_by_name_hostname_or_index():
    from types import SimpleNamespace as Ref

    lab = fleet(host("box-1"), host("box-2"), host("box-3"))

    def chosen(*references) -> list[int]:
        configuration = Ref(instances=list(references))
        return [index for index in range(3) if allocation.named(configuration, lab, index)]

    assert chosen() == [0, 1, 2]
    assert chosen(Ref(name="box-2", hostname=None)) == [1]
    assert chosen(Ref(name="lab-2", hostname=None)) == [2], "dstack names a fleet's instances <fleet>-<index>"
    assert chosen(Ref(name=None, hostname="box-1")) == [0]
    assert chosen(Ref(name=None, hostname=None, fleet="lab", instance=1), Ref(name="box-3", hostname=None)) == [1, 2]
    assert chosen(Ref(name=None, hostname=None, fleet="other", instance=1)) == []
