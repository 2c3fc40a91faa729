"""Symmetric InfoNCE with in-batch negatives gathered across processes.

For queries ``q`` [B, D] and their targets ``t`` [B, D] (both L2-normalised, row i of ``t`` is
the positive of row i of ``q``), with similarity ``S = q t^T / temperature`` [B, B]:

    loss = (CE(S, diag) + CE(S^T, diag)) / 2

i.e. query->target and target->query cross-entropy, averaged. Optional hard negatives ``n``
[M, D] join the *query->target* side only (extra columns ``q n^T``): they are candidates for the
queries, not queries for the targets.

Across processes every rank gathers the embeddings of all ranks (:func:`gather_with_grad`), so
the negatives are the whole global batch, and computes the *same* global loss. Gradients flow
back only into the rank's own shard (the other shards are copies), which gives each rank exactly
``d loss / d (its embeddings)``. DDP and DeepSpeed then *average* parameter gradients over ranks,
so the backward pass must use ``loss * world_size`` (:func:`ddp_loss_scale`) to end up with the
gradient of the global loss — the same as one process with the whole batch.

>>> import torch
>>> q = torch.nn.functional.normalize(torch.eye(3), dim=-1)
>>> out = info_nce(q, q.clone(), temperature=0.1)
>>> round(float(out.loss), 4), float(out.accuracy)
(0.0001, 1.0)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class InfoNCEOutput(NamedTuple):
    loss: Tensor  # scalar, the symmetric loss (graph attached)
    accuracy: Tensor  # scalar, fraction of queries whose top-1 candidate is their own target
    loss_q2t: Tensor  # scalar, detached
    loss_t2q: Tensor  # scalar, detached


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: Tensor) -> Tensor:
    """All ranks' ``x`` [B, ...] concatenated in rank order [W*B, ...]; the local shard keeps its
    graph (gradient flows into it), the others are detached copies. Every rank must pass the
    same shape. Without a process group: ``x`` itself."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


def ddp_loss_scale() -> int:
    """Factor for the loss that is back-propagated under gradient averaging (see module doc)."""
    return world()[1]


def info_nce(
    q: Tensor,
    t: Tensor,
    *,
    temperature: float,
    hard_negatives: Tensor | None = None,
    gather: bool = True,
) -> InfoNCEOutput:
    """Symmetric InfoNCE of local ``q`` [B, D] and ``t`` [B, D] (+ ``hard_negatives`` [M, D]).

    With ``gather`` and a process group, the loss is over the global batch (all ranks' rows);
    every rank returns the same value. Computed in float32 whatever the embeddings' dtype.
    """
    if q.shape != t.shape or q.dim() != 2:
        raise ValueError(
            f"queries {tuple(q.shape)} and targets {tuple(t.shape)} must be [B, D] alike"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if gather:
        q, t = gather_with_grad(q), gather_with_grad(t)
        if hard_negatives is not None:
            hard_negatives = gather_with_grad(hard_negatives)
    q, t = q.float(), t.float()
    scale = 1.0 / temperature
    sim = q @ t.T  # [N, N], N = global batch
    labels = torch.arange(sim.shape[0], device=sim.device)
    q2t = sim
    if hard_negatives is not None and hard_negatives.numel():
        q2t = torch.cat([sim, q @ hard_negatives.float().T], dim=1)  # [N, N + M]
    loss_q2t = F.cross_entropy(q2t * scale, labels)
    loss_t2q = F.cross_entropy(sim.T * scale, labels)
    loss = (loss_q2t + loss_t2q) / 2
    with torch.no_grad():
        accuracy = (q2t.argmax(dim=1) == labels).float().mean()
    return InfoNCEOutput(loss, accuracy, loss_q2t.detach(), loss_t2q.detach())
