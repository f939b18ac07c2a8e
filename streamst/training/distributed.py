"""Data-parallel training across processes (``torchrun --nproc_per_node N -m streamst.cli train ...``).

:func:`init_from_env` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process group: NCCL on CUDA
(each process on ``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun (``WORLD_SIZE`` unset or
1) it returns :data:`SINGLE` and nothing changes.

The scheme (``streamst/training/trainer.py``): every process builds the same model from the
same seed (and takes rank 0's trainable weights, :meth:`World.broadcast`), computes the same
global batch indices of a step, and works on its own contiguous share of them; each share's
loss is its *summed* target-token cross-entropy divided by the global batch's target tokens,
so after the gradients are summed across processes (:meth:`World.sum_grads`, one flat
all-reduce) every process holds exactly the gradient of the one-process step, clips and
steps identically, and the weights never diverge. Rank 0 alone writes the log, checkpoints
and the outputs; all ranks read the checkpoint on ``--resume``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from streamst.errors import UserError


@dataclass(frozen=True)
class World:
    """This process' place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, indices: list[int]) -> list[int]:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        n = len(indices)
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        return indices[lo:hi]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum across ranks (float64)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.cpu().tolist()

    def sum_grads(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` across ranks (one flat all-reduce)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    @torch.no_grad()
    def broadcast(self, params: list[torch.Tensor]) -> None:
        """Every rank takes rank 0's values of ``params``."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for p in params:
            dist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def _comm_device(self) -> torch.device:
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE = World()


def init_from_env(device: str, *, timeout_s: float = 1800.0) -> tuple[World, str]:
    """Join torchrun's process group if this process was started by it: (world, this rank's device)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return SINGLE, device
    import torch.distributed as dist

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine")
        if device == "cuda":
            device = f"cuda:{local}"  # one GPU per process
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size,
                                    timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise UserError(f"cannot join the torchrun process group as rank {rank} of {size}: {e}") from e
    return World(rank, size, local), device


def shutdown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
