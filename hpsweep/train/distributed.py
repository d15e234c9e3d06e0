"""Data-parallel training inside the shared loop: who this process is among a trial's workers, and the
few collective steps the loop needs (a process group set up by the caller turns them on).

With one worker every function here is the identity, so a single-worker fit does exactly what it did
before. With N workers each global batch is dealt out across them (`batch_size` is the global batch),
DistributedDataParallel averages the gradients, and validation outputs are gathered so that every
worker computes the metrics of a single-worker validation of the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place among the trial's workers."""

    rank: int = 0
    world: int = 1

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def share(self, index: torch.Tensor) -> torch.Tensor:
        """This worker's part of a global batch's indices: every world-th example from its rank on, so the
        parts differ in size by at most one and together make up the batch."""
        return index[self.rank::self.world] if self.parallel else index

    def loss_weight(self, local: int, total: int) -> float:
        """What the mean loss of `local` examples is multiplied by so that DistributedDataParallel's average
        of the workers' gradients is the gradient of the mean loss over all `total` examples."""
        return local * self.world / total if self.parallel else 1.0

    def chunk(self, n: int, rank: int | None = None) -> tuple[int, int]:
        """The contiguous rows [start, stop) of n that this worker (or worker `rank`) evaluates."""
        size, rank = -(-n // self.world), self.rank if rank is None else rank
        return min(n, rank * size), min(n, (rank + 1) * size)


SINGLE = Group()


def current() -> Group:
    """The group of an initialised torch.distributed process group, else a single worker."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Group(dist.get_rank(), dist.get_world_size())
    return SINGLE


def total(group: Group, *values: float) -> list[float]:
    """The sums of `values` over all workers."""
    if not group.parallel:
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces only tensors on the GPU
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gathered(group: Group, part: torch.Tensor, n: int) -> torch.Tensor:
    """The rows every worker computed for its `chunk` of n, put back together in order on every worker."""
    if not group.parallel:
        return part
    bounds = [group.chunk(n, rank) for rank in range(group.world)]  # the first is the largest
    padded = torch.zeros((bounds[0][1], *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[:len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(group.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:stop - start] for p, (start, stop) in zip(parts, bounds, strict=True)])


def data_parallel(group: Group, module: nn.Module, device: torch.device) -> nn.Module:
    """`module` wrapped so that its backward pass averages gradients over the workers (itself alone)."""
    if not group.parallel:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def synchronised_norms(group: Group, net: nn.Module, device: torch.device) -> nn.Module:
    """On GPUs, batch norm computed over the global batch (SyncBatchNorm), as one worker would; on CPUs,
    where torch has no SyncBatchNorm, each worker normalises its part of the batch (`agree` then makes
    the running statistics rank 0's before validation and checkpoints)."""
    if group.parallel and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net


def agree(group: Group, net: nn.Module) -> None:
    """Every worker takes rank 0's buffers (batch-norm statistics), so all validate one and the same model."""
    if group.parallel:
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)
