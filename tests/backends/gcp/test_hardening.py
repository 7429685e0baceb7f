"""GCP nodes are hardened: each property checked on what the component asks GCE for (mocks)."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.backends.gcp.components import GcpTaskCluster
from tests.backends.cloud.mocks import EXPIRES_AT, RecordingMocks, cluster_spec, settle, unwrap
from tests.backends.gcp.test_components import cheapest


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


def instance_of(mocks):
    [instance] = mocks.of_type("gcp:compute/instance:Instance")
    return instance.inputs


@pulumi.runtime.test
def test_no_serial_port_no_os_login_no_project_keys(mocks):
    cluster = GcpTaskCluster("run", cluster_spec(cheapest(None)))

    def check(_):
        metadata = unwrap(instance_of(mocks)["metadata"])
        assert (metadata["serial-port-enable"], metadata["enable-oslogin"], metadata["block-project-ssh-keys"]) == \
            ("FALSE", "FALSE", "TRUE")
        assert unwrap(metadata["ssh-keys"]).startswith("ubuntu:ssh-ed25519 ")

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_shielded_vm_with_secure_boot_where_the_image_allows(mocks):
    cpu = GcpTaskCluster("cpu", cluster_spec(cheapest(None)))

    def check(_):
        assert instance_of(mocks)["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableVtpm": True,
                                                                  "enableIntegrityMonitoring": True}

    return settle(cpu).apply(check)


@pulumi.runtime.test
def test_gpu_nodes_are_shielded_without_secure_boot(mocks):
    gpu = GcpTaskCluster("gpu", cluster_spec(cheapest("T4")))

    def check(_):
        assert instance_of(mocks)["shieldedInstanceConfig"] == {"enableSecureBoot": False, "enableVtpm": True,
                                                                  "enableIntegrityMonitoring": True}

    return settle(gpu).apply(check)


@pulumi.runtime.test
def test_labels_say_run_owner_and_expiry_and_the_lease_powers_off(mocks):
    cluster = GcpTaskCluster("run", cluster_spec(cheapest(None)))

    def check(_):
        inputs = instance_of(mocks)
        assert {"dstack-iac-run": "train-run", "dstack-iac-owner": "alice",
                "dstack-iac-expires-at": str(EXPIRES_AT)}.items() <= inputs["labels"].items()
        script = unwrap(unwrap(inputs["metadata"])["startup-script"])
        assert "-gt 600 ]; then shutdown -h now; fi" in script  # a GCE instance stops; gc deletes it
        names = sorted(f.inputs["name"] for f in mocks.of_type("gcp:compute/firewall:Firewall"))
        assert names == ["dstack-iac-train-run-intra", "dstack-iac-train-run-ssh"]  # findable without labels

    return settle(cluster).apply(check)
