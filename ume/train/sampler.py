"""Batches as the paper builds them: single-dataset sub-batches, datasets drawn by weight x size.

A global batch of ``global_batch_size`` pairs is made of ``global_batch_size / sub_batch_size``
sub-batches. Each sub-batch comes from one dataset, chosen with probability proportional to
``weight x size`` (the Embed-RL release's sampler; ``size`` = the dataset's rows in the
contrastive set), so in-batch negatives are mostly same-dataset — hard, but also prone to false
negatives on few-class sets, which is why the split keeps those out. At most
``max_video_sub_batches`` sub-batches of a batch are video (memory). Within a dataset, rows come
from a seeded permutation walked in order (a new one per pass), and a pair never appears twice in
one global batch (a duplicate would be its own false negative): a dataset whose rows are used up
within the batch is not drawn again for it, and a sub-batch is shorter than ``sub_batch_size``
only when its dataset has fewer rows left.

Deterministic: batch ``s`` depends only on (data, seed, s). The state is the step number:
:meth:`ContrastiveBatchSampler.batches` replays the index arithmetic from step 0 (no data is
read), so resuming at step ``s`` yields exactly the batches an uninterrupted run would.

>>> import pandas as pd
>>> df = pd.DataFrame({"dataset": ["a"] * 6 + ["v"] * 6, "modality": ["image"] * 6 + ["video"] * 6})
>>> s = ContrastiveBatchSampler.from_frame(df, global_batch_size=4, sub_batch_size=2, num_steps=3)
>>> [len(b) for b in s]
[4, 4, 4]
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ume.errors import ConfigError, DataError


@dataclass(frozen=True)
class DatasetSlot:
    name: str
    rows: np.ndarray  # row indices (into the pair table) of this dataset
    weight: float
    video: bool

    @property
    def size(self) -> int:
        return len(self.rows)


class ContrastiveBatchSampler:
    """Yields one global batch (a list of row indices) per step, ``num_steps`` of them.

    A torch ``batch_sampler``: ``len()`` is the number of steps still to come, ``__iter__``
    yields them from ``start_step`` on. :attr:`sub_batches` of a step gives the structure.
    """

    def __init__(
        self,
        datasets: Sequence[DatasetSlot],
        *,
        global_batch_size: int,
        sub_batch_size: int,
        num_steps: int,
        max_video_sub_batches: int = 1,
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if sub_batch_size < 1 or global_batch_size < sub_batch_size:
            raise ConfigError(
                f"train_embedder.sub_batch_size = {sub_batch_size} must be >= 1 and at most "
                f"global_batch_size = {global_batch_size}"
            )
        if global_batch_size % sub_batch_size:
            raise ConfigError(
                f"train_embedder.global_batch_size = {global_batch_size} must be a multiple of "
                f"sub_batch_size = {sub_batch_size}"
            )
        if max_video_sub_batches < 0:
            raise ConfigError("train_embedder.max_video_sub_batches must be >= 0")
        self.datasets = [d for d in datasets if d.size and d.weight > 0]
        if not self.datasets:
            raise DataError("no dataset with rows and a positive weight to train on")
        if not any(not d.video for d in self.datasets) and max_video_sub_batches == 0:
            raise ConfigError(
                "train_embedder.max_video_sub_batches = 0 but every dataset is video; raise it"
            )
        self.global_batch_size = global_batch_size
        self.sub_batch_size = sub_batch_size
        self.n_sub = global_batch_size // sub_batch_size
        self.max_video = max_video_sub_batches
        self.num_steps = num_steps
        self.seed = seed
        self.start_step = start_step
        self.rank, self.world_size = rank, world_size
        mass = np.array([d.weight * d.size for d in self.datasets], dtype=float)
        self.probabilities = mass / mass.sum()  # the draw distribution before the video cap

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df,
        *,
        weights: Mapping[str, float] | None = None,
        excluded: Sequence[str] = (),
        **kw,
    ) -> ContrastiveBatchSampler:
        """From a pair table (columns ``dataset`` and ``modality``); ``weights`` per dataset
        (missing: 1.0). A dataset in ``excluded`` raises: the split must have kept it out."""
        names = list(dict.fromkeys(df["dataset"].tolist()))
        sneaked = sorted(set(names) & set(excluded))
        if sneaked:
            raise DataError(
                f"the contrastive set holds {sneaked}, which split.exclude_from_contrastive keeps "
                "out of contrastive training; rerun the split stage"
            )
        weights = dict(weights or {})
        ds = df["dataset"].to_numpy()
        mod = df["modality"].to_numpy()
        slots = []
        for name in sorted(names):
            rows = np.flatnonzero(ds == name)
            slots.append(
                DatasetSlot(
                    name, rows, float(weights.get(name, 1.0)), bool((mod[rows] == "video").any())
                )
            )
        return cls(slots, **kw)

    # ------------------------------------------------------------------ batches
    def _perm(self, d: int, epoch: int) -> np.ndarray:
        key = zlib.crc32(self.datasets[d].name.encode())
        return np.random.default_rng([self.seed, key, epoch]).permutation(self.datasets[d].size)

    def sub_batches(self) -> Iterator[list[tuple[str, list[int]]]]:
        """For every step from 0: the sub-batches as ``(dataset, row indices)``."""
        rng = np.random.default_rng([self.seed, 0x5AB])
        cursor = [0] * len(self.datasets)  # position in the endless stream of permutations
        perms: dict[tuple[int, int], np.ndarray] = {}
        for _ in range(self.num_steps):
            used: list[set[int]] = [set() for _ in self.datasets]
            videos = 0
            batch = []
            for _ in range(self.n_sub):
                ok = np.array(
                    [
                        len(used[i]) < d.size and (not d.video or videos < self.max_video)
                        for i, d in enumerate(self.datasets)
                    ]
                )
                if not ok.any():
                    break  # every dataset used up in this batch (tiny data): a shorter batch
                p = self.probabilities * ok
                i = int(rng.choice(len(self.datasets), p=p / p.sum()))
                d = self.datasets[i]
                take = min(self.sub_batch_size, d.size - len(used[i]))
                rows: list[int] = []
                while len(rows) < take:
                    epoch, pos = divmod(cursor[i], d.size)
                    if (i, epoch) not in perms:
                        perms = {
                            k: v for k, v in perms.items() if k[0] != i
                        }  # keep one per dataset
                        perms[(i, epoch)] = self._perm(i, epoch)
                    j = int(perms[(i, epoch)][pos])
                    cursor[i] += 1
                    if j not in used[i]:
                        used[i].add(j)
                        rows.append(int(d.rows[j]))
                videos += d.video
                batch.append((d.name, rows))
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        """This process's share of each global batch from ``start_step`` on: a contiguous
        ``1/world_size`` slice (a batch is cut to a multiple of ``world_size`` first, so that
        every process embeds the same number of pairs for the cross-process gather)."""
        for step, subs in enumerate(self.sub_batches()):
            if step >= self.start_step:
                flat = [r for _, rows in subs for r in rows]
                n = len(flat) // self.world_size
                yield flat[self.rank * n : (self.rank + 1) * n]

    def __len__(self) -> int:
        return max(0, self.num_steps - self.start_step)

    def state_dict(self) -> dict[str, int]:
        return {"step": self.start_step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.start_step = int(state["step"])


def num_steps_for(
    n_pairs: int, global_batch_size: int, epochs: float, max_steps: int | None
) -> int:
    """Steps of a run: ``max_steps`` if set, else ``ceil(epochs * n_pairs / global_batch_size)``."""
    if max_steps is not None:
        return max_steps
    return max(1, int(np.ceil(epochs * n_pairs / global_batch_size)))
