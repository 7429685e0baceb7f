"""Every YAML example of the specification (../shared/seeds) validates, field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack_iac.config.loader import load_task

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"


def load(name: str, run_args=(), env=None):
    return load_task(SEEDS, SEEDS / name, run_args=run_args, caller_env=env or {}, home=SEEDS / "no-home").configuration


def test_every_seed_is_covered():
    assert len(list(SEEDS.glob("*.dstack.yml"))) == 10


def test_distributed_task():
    c = load("000-00-train.dstack.yml")
    assert c.name == "train-distrib" and c.nodes == 2 and c.python == "3.10"
    assert c.commands[0] == "pip install -r requirements.txt"
    # YAML folds the multi-line plain scalar into one line
    assert c.commands[1] == (
        "torchrun --nproc_per_node=$DSTACK_GPUS_PER_NODE --node_rank=$DSTACK_NODE_RANK "
        "--nnodes=$DSTACK_NODES_NUM --master_addr=$DSTACK_MASTER_NODE_IP --master_port=8008 resnet_ddp.py "
        "--num_epochs 20"
    )
    gpu = c.resources.gpu
    assert (gpu.memory.min, gpu.memory.max) == (24, 24)
    assert (gpu.count.min, gpu.count.max) == (1, 1)
    assert gpu.names is None and gpu.vendor is None
    assert (c.resources.cpu.count.min, c.resources.cpu.count.max) == (2, None)
    assert (c.resources.memory.min, c.resources.disk.size.min) == (8, 100)
    assert c.spot_policy.value == "on-demand" and c.max_duration is None and c.retry is None


def test_backends_and_regions():
    assert load("000-01-train.dstack.yml").backends == ["aws", "gcp"]
    c = load("000-02-train.dstack.yml")
    assert c.regions == ["eu-west-1", "eu-west-2"] and c.backends is None
    assert c.commands == ["pip install -r fine-tuning/qlora/requirements.txt", "python fine-tuning/qlora/train.py"]


def test_network_volume():
    c = load("000-03-train.dstack.yml")
    assert c.name == "vscode"
    [mount] = c.volumes
    assert (mount.kind, mount.name, mount.path) == ("network", ["my-new-volume"], "/volume_data")


def test_python_and_ports():
    c = load("003-04-train.dstack.yml")
    assert c.python == "3.11" and c.ports == [] and c.image is None
    [port] = load("003-05-serve.dstack.yml").ports
    assert (port.local_port, port.container_port) == (7860, 7860)
    [mapped] = load("003-06-serve.dstack.yml").ports
    assert (mapped.local_port, mapped.container_port) == (3000, 7860)


def test_image_and_build():
    c = load("003-07-dot.dstack.yml")
    assert c.image == "nvcr.io/nvidia/pytorch:22.12-py3" and c.python is None
    assert c.commands == ["pip install -r requirements.txt", "python train.py"]
    b = load("003-08-train.dstack.yml")
    assert b.build == ["pip install -r requirements.txt"] and b.commands == ["python train.py"]


def test_run_args_stay_references_and_are_shown_shell_quoted():
    task = load_task(SEEDS, SEEDS / "003-09-args.dstack.yml", run_args=["--train_batch_size=1", "a b"],
                     caller_env={}, home=SEEDS / "no-home")
    # The node gets the arguments as data (see execution/script.py), never spliced into the text.
    assert task.configuration.commands == ["python train.py ${{ run.args }}"]
    assert task.display_commands(task.configuration.commands) == ["python train.py --train_batch_size=1 'a b'"]
    assert load("003-09-args.dstack.yml").commands == ["python train.py ${{ run.args }}"]


@pytest.mark.parametrize("name", sorted(p.name for p in SEEDS.glob("*.dstack.yml")))
def test_cli_validates_each_seed(name):
    from tests.helpers import run_cli

    result = run_cli("validate", "-f", str(SEEDS / name), "--json")
    assert result.returncode == 0, result.stderr
    assert '"valid": true' in result.stdout
