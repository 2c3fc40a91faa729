"""Gradient caching (GradCache, Gao et al. 2021): a contrastive step over a large batch whose
activation memory is that of one chunk.

A contrastive loss couples every row of the batch, so it cannot be split into independent
micro-batches. GradCache splits the *model* part instead:

1. embed every chunk without a graph (``torch.no_grad``) -> the whole batch's embeddings;
2. compute the loss on them (with a graph over the embeddings only) and its gradient with
   respect to each embedding (``d loss / d e``, cached);
3. for every chunk again: forward *with* a graph, then back-propagate the cached gradient
   (``backward(sum(e * cached_grad))``), accumulating parameter gradients chunk by chunk.

The parameter gradients equal those of the plain full-batch step up to float rounding
(``tests/unit/test_gradcache.py``): the only requirement is that the second forward of a chunk
is the same function as the first, so the random state (dropout, e.g. LoRA dropout) of each
chunk is recorded in pass 1 and replayed in pass 3.

>>> import torch
>>> lin = torch.nn.Linear(4, 3)
>>> x, y = torch.randn(8, 4), torch.randn(8, 4)
>>> def loss_fn(reps):
...     return (reps[0] * reps[1]).sum(-1).mean()
>>> out = gradcache_step(lin, [list(x.split(2)), list(y.split(2))], loss_fn)
>>> g = lin.weight.grad.clone(); lin.zero_grad()
>>> ref = loss_fn([lin(x), lin(y)]); ref.backward()
>>> torch.allclose(g, lin.weight.grad, atol=1e-6), torch.allclose(out, ref)
(True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


class RandState:
    """The CPU and CUDA random states at one moment, to replay a forward pass exactly."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    @contextlib.contextmanager
    def replay(self):
        """Run the block from the recorded state; the outside random state is left untouched."""
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def chunk(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``seq`` in consecutive pieces of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def gradcache_step(
    embed: Callable[[Any], Tensor],
    groups: Sequence[Sequence[Any]],
    loss_fn: Callable[[list[Tensor]], Any],
    *,
    backward: Callable[[Tensor, bool], None] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    loss_scale: float = 1.0,
    cache: bool = True,
) -> Any:
    """One GradCache forward/backward; returns what ``loss_fn`` returns (its graph freed).

    - ``embed(chunk) -> [b, D]``: the model on one chunk's inputs (called twice per chunk,
      once when every group is one chunk).
    - ``groups``: per side (queries, targets, hard negatives...) the list of its chunks.
    - ``loss_fn(reps)``: ``reps[g]`` = group ``g``'s embeddings [N_g, D] in chunk order; returns a
      scalar tensor, or an object whose ``.loss`` is one (e.g. :class:`InfoNCEOutput`).
    - ``backward(surrogate, is_last)``: how to back-propagate into the model (default
      ``surrogate.backward()``; under accelerate / DeepSpeed ``accelerator.backward``, with the
      last chunk as the gradient-accumulation boundary).
    - ``no_sync()``: context that defers the gradient all-reduce (DDP); used for every chunk
      but the last.
    - ``loss_scale``: factor on the loss for the backward pass only (``world_size`` under
      gradient averaging, see :mod:`ume.train.losses`).

    Parameter gradients are *accumulated* (``.grad +=``) like a plain ``loss.backward()``.

    When every group is a single chunk the cache buys nothing (the whole batch's activations
    are held anyway), and with ``cache=False`` it is not wanted (memory is plentiful: a tiny
    model): the step is then a plain forward of every chunk with a graph and one backward,
    which saves the second forward. Chunks still pad separately (a chunk of short inputs is
    not padded to the batch's longest).
    """
    backward = backward or (lambda s, is_last: s.backward())
    if not cache or all(len(chunks) == 1 for chunks in groups):
        result = loss_fn([torch.cat([embed(c) for c in chunks]) for chunks in groups])
        loss = result if isinstance(result, Tensor) else result.loss
        backward(loss * loss_scale, True)
        return _detached(result)
    # pass 1: embeddings without a graph, remembering each chunk's random state
    states: list[list[RandState]] = []
    reps: list[Tensor] = []
    for chunks in groups:
        st, out = [], []
        for c in chunks:
            st.append(RandState())
            with torch.no_grad():
                out.append(embed(c))
        states.append(st)
        reps.append(torch.cat(out).detach().requires_grad_())
    # pass 2: the loss and its gradient with respect to every embedding
    with torch.enable_grad():
        result = loss_fn(reps)
        loss = result if isinstance(result, Tensor) else result.loss
        (loss * loss_scale).backward()
    grads = [r.grad for r in reps]
    # pass 3: re-forward chunk by chunk with a graph; push the cached gradient through
    last = (len(groups) - 1, len(groups[-1]) - 1)
    for g, chunks in enumerate(groups):
        offset = 0
        for k, c in enumerate(chunks):
            is_last = (g, k) == last
            ctx = no_sync() if (no_sync is not None and not is_last) else contextlib.nullcontext()
            with ctx, states[g][k].replay():
                e = embed(c)
                ge = grads[g][offset : offset + e.shape[0]]
                offset += e.shape[0]
                surrogate = torch.dot(e.flatten().float(), ge.flatten().float())
                backward(surrogate, is_last)
    return _detached(result)


def _detached(result: Any) -> Any:
    if isinstance(result, Tensor):
        return result.detach()
    if hasattr(result, "_replace") and hasattr(result, "loss"):  # e.g. InfoNCEOutput
        return result._replace(loss=result.loss.detach())
    return result
