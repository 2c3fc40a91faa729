"""Symmetric InfoNCE: hand-computed tables, and the cross-process gather (2 gloo processes)."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from ume.train.losses import ddp_loss_scale, gather_with_grad, info_nce, world

pytestmark = pytest.mark.unit

L1 = math.log1p(math.exp(-1))  # -log(e / (e + 1))
L2 = math.log(2)

# (queries, targets, hard negatives, temperature, loss, loss_q2t, loss_t2q, accuracy)
CASES = [
    ([[1, 0], [0, 1]], [[1, 0], [0, 1]], None, 1.0, L1, L1, L1, 1.0),
    ([[1, 0], [0, 1]], [[1, 0], [0, 1]], None, 0.5, math.log1p(math.exp(-2)), None, None, 1.0),
    ([[1, 0], [0, 1]], [[0, 1], [1, 0]], None, 1.0, math.log1p(math.e), None, None, 0.0),
    # asymmetric: both targets equal the first query
    (
        [[1, 0], [0, 1]],
        [[1, 0], [1, 0]],
        None,
        1.0,
        (L2 + (L1 + math.log1p(math.e)) / 2) / 2,
        L2,
        (L1 + math.log1p(math.e)) / 2,
        None,
    ),
    # a hard negative identical to the positive: q->t gets log 2, t->q is untouched
    ([[1, 0]], [[1, 0]], [[1, 0]], 1.0, L2 / 2, L2, 0.0, None),
    (
        [[1, 0], [0, 1]],
        [[1, 0], [0, 1]],
        [[0, 1]],
        1.0,
        None,
        (math.log(1 + 2 * math.exp(-1)) + math.log(2 + math.exp(-1))) / 2,
        L1,
        None,
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_info_nce_matches_hand_computed_values(case):
    q, t, n, temp, loss, q2t, t2q, acc = case
    n = torch.tensor(n, dtype=torch.float) if n is not None else None
    out = info_nce(
        torch.tensor(q, dtype=torch.float),
        torch.tensor(t, dtype=torch.float),
        temperature=temp,
        hard_negatives=n,
    )
    for want, got in (
        (loss, out.loss),
        (q2t, out.loss_q2t),
        (t2q, out.loss_t2q),
        (acc, out.accuracy),
    ):
        if want is not None:
            assert float(got) == pytest.approx(want, abs=1e-6)


def test_info_nce_is_symmetric_and_matches_the_textbook_formula():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(6, 5), dim=-1)
    t = F.normalize(torch.randn(6, 5), dim=-1)
    out = info_nce(q, t, temperature=0.02)
    logits = q @ t.T / 0.02
    ref = (
        F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))
    ) / 2
    assert torch.allclose(out.loss, ref, atol=1e-6)
    swapped = info_nce(t, q, temperature=0.02)  # swapping sides swaps the two directions
    assert torch.allclose(swapped.loss, out.loss, atol=1e-6)
    assert torch.allclose(swapped.loss_q2t, out.loss_t2q, atol=1e-6)


def test_info_nce_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError, match="must be"):
        info_nce(torch.zeros(2, 3), torch.zeros(3, 3), temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)


def test_single_process_gather_is_the_identity():
    x = torch.randn(3, 2)
    assert world() == (0, 1) and ddp_loss_scale() == 1
    assert gather_with_grad(x) is x


# ----------------------------------------------------------------------- two gloo processes
B, D, W = 3, 4, 2


def _full_batch():
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(B * W, D, generator=g), dim=-1)
    t = F.normalize(torch.randn(B * W, D, generator=g), dim=-1)
    n = F.normalize(torch.randn(2 * W, D, generator=g), dim=-1)
    return q, t, n


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=W)
    try:
        q, t, n = _full_batch()
        mine = slice(rank * B, (rank + 1) * B)
        ql = q[mine].clone().requires_grad_()
        tl = t[mine].clone().requires_grad_()
        nl = n[rank * 2 : (rank + 1) * 2].clone().requires_grad_()
        out = info_nce(ql, tl, temperature=0.05, hard_negatives=nl)
        out.loss.backward()
        torch.save(
            {
                "loss": out.loss.detach(),
                "acc": out.accuracy,
                "scale": ddp_loss_scale(),
                "gq": ql.grad,
                "gt": tl.grad,
                "gn": nl.grad,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_gather_across_two_processes_gives_the_full_batch_loss_and_local_gradients(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=W, start_method="spawn"
    )
    q, t, n = (x.clone().requires_grad_() for x in _full_batch())
    ref = info_nce(q, t, temperature=0.05, hard_negatives=n)
    ref.loss.backward()
    for rank in range(W):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["scale"] == W
        assert torch.allclose(got["loss"], ref.loss.detach(), atol=1e-6)
        assert torch.allclose(got["acc"], ref.accuracy)
        # each rank gets d(global loss)/d(its own shard): the slice of the full-batch gradient
        assert torch.allclose(got["gq"], q.grad[rank * B : (rank + 1) * B], atol=1e-6)
        assert torch.allclose(got["gt"], t.grad[rank * B : (rank + 1) * B], atol=1e-6)
        assert torch.allclose(got["gn"], n.grad[rank * 2 : (rank + 1) * 2], atol=1e-6)
