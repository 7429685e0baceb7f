"""A tiny DistributedDataParallel training loop on CPU (gloo): every rank trains the same linear
model on its own shard, gradients are all-reduced, and each rank prints a value all ranks agree on."""

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(rank)
    for step in range(args.steps):
        inputs = torch.randn(16, 8, generator=generator)
        loss = ((model(inputs) - inputs.sum(dim=1, keepdim=True)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"rank {rank}/{world} step {step} loss {loss.item():.4f}", flush=True)

    # Proof that every rank took part: the sum of (rank + 1) over all ranks.
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    checksum = sum(p.detach().sum().item() for p in model.parameters())
    print(f"rank {rank} node {os.environ.get('DSTACK_NODE_RANK')} all_reduce={value.item():g} "
          f"world={world} weights={checksum:.6f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
