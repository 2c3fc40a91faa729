"""Fixtures of the science tier: one miniature per session, Embedders trained on it (lazily,
each once), and the decoded training batches the contrastive stage built."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.science import miniature as M


@pytest.fixture(scope="session")
def mini(tmp_path_factory):
    return M.build(tmp_path_factory.mktemp("miniature"), M.SEED)


@pytest.fixture(scope="session")
def heldout(mini) -> pd.DataFrame:
    return M.read_pairs(mini.heldout)


@pytest.fixture(scope="session")
def recorded(mini):
    """The Embedder trained with the T-CoT (train_embedder.tcot_input: full), and every
    batch its training built, as seen by the model: ``(embedder, batches)``, a batch being
    ``(examples, output of the batch builder, processor)``."""
    from ume.train.contrastive import BatchBuilder

    batches: list = []
    original = BatchBuilder.__call__

    def recording(self, examples):
        out = original(self, examples)
        if len(batches) < 3:
            batches.append((examples, out, self.processor))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BatchBuilder, "__call__", recording)
        folder = M.train(mini, "full", mini.contrastive, {})
    return M.load(folder), batches


@pytest.fixture(scope="session")
def raw_trained(mini):
    return M.load(M.train(mini, "raw", mini.contrastive, {"train_embedder": {"tcot_input": "raw"}}))


@pytest.fixture(scope="session")
def crop_world(mini, heldout):
    """Crop-only pairs (:func:`tests.science.miniature.colourless`): Embedders trained on them
    with the evidence visuals (full) and without (no_evidence), and the evaluation groups."""
    pairs = M.read_pairs(mini.root / "data/pairs.parquet")
    train = M.colourless(pairs[~pairs["pair_id"].isin(heldout["pair_id"])])
    path = mini.root / "split/colourless.parquet"
    train.to_parquet(path)
    steps = {"max_steps": M.CROP_STEPS}
    full = M.train(mini, "cl_full", path, {"train_embedder": steps})
    noev = M.train(
        mini, "cl_noev", path, {"train_embedder": {**steps, "tcot_input": "no_evidence"}}
    )
    return M.load(full), M.load(noev), M.colour_groups(M.colourless(heldout), seed=mini.seed)
