"""The contrastive batch sampler: single-dataset sub-batches, weight x size, video cap, resume."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from ume.errors import ConfigError, DataError
from ume.train.sampler import ContrastiveBatchSampler, num_steps_for

pytestmark = pytest.mark.unit


def _frame(sizes: dict[str, int], video: tuple[str, ...] = ()) -> pd.DataFrame:
    rows = []
    for name, n in sizes.items():
        rows += [{"dataset": name, "modality": "video" if name in video else "image"}] * n
    # interleave so row indices of a dataset are not contiguous
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def _sampler(df, **kw):
    args = {"global_batch_size": 8, "sub_batch_size": 2, "num_steps": 50, "seed": 0} | kw
    return ContrastiveBatchSampler.from_frame(df, **args)


def test_each_sub_batch_comes_from_one_dataset_and_a_batch_has_no_duplicates():
    df = _frame({"a": 30, "b": 7, "c": 12})
    s = _sampler(df, global_batch_size=12, sub_batch_size=4)
    for subs in s.sub_batches():
        flat = [r for _, rows in subs for r in rows]
        assert len(flat) == len(set(flat)) <= 12  # "b" (7 rows) drawn twice gives 4 + 3
        for name, rows in subs:
            assert 0 < len(rows) <= 4
            assert set(df.loc[rows, "dataset"]) == {name}


def test_datasets_are_drawn_in_proportion_to_weight_times_size():
    df = _frame({"a": 100, "b": 50, "c": 300})
    weights = {"a": 1.0, "b": 2.0, "c": 1.0}  # mass 100 : 100 : 300
    s = _sampler(df, weights=weights, num_steps=2000)
    assert s.probabilities.tolist() == pytest.approx([0.2, 0.2, 0.6])
    counts = Counter(name for subs in s.sub_batches() for name, _ in subs)
    total = sum(counts.values())
    for name, p in zip("abc", (0.2, 0.2, 0.6), strict=True):
        assert counts[name] / total == pytest.approx(p, abs=0.02)


def test_zero_weight_datasets_are_never_drawn():
    s = _sampler(_frame({"a": 20, "b": 20}), weights={"b": 0.0})
    assert {n for subs in s.sub_batches() for n, _ in subs} == {"a"}


@pytest.mark.parametrize("cap", [0, 1, 2])
def test_video_sub_batches_per_batch_are_capped(cap):
    df = _frame({"img": 40, "v1": 400, "v2": 400}, video=("v1", "v2"))
    s = _sampler(df, max_video_sub_batches=cap, num_steps=200)
    per_batch = [sum(n.startswith("v") for n, _ in subs) for subs in s.sub_batches()]
    assert max(per_batch) == cap  # video dominates by mass, so the cap is reached
    assert all(len(subs) == 4 for subs in s.sub_batches())


def test_deterministic_under_seed_and_seed_sensitive():
    df = _frame({"a": 30, "b": 30, "c": 30})
    assert list(_sampler(df)) == list(_sampler(df))
    assert list(_sampler(df)) != list(_sampler(df, seed=1))


def test_resume_at_a_step_yields_the_remaining_batches_of_an_uninterrupted_run():
    df = _frame({"a": 30, "b": 9, "c": 50})
    full = list(_sampler(df))
    s = _sampler(df)
    s.load_state_dict({"step": 17})
    assert s.state_dict() == {"step": 17}
    assert len(s) == 33
    assert list(s) == full[17:]


def test_a_dataset_is_walked_as_a_permutation_before_any_row_repeats():
    df = _frame({"a": 10})
    s = _sampler(df, global_batch_size=4, sub_batch_size=2, num_steps=5)  # 20 draws = 2 passes
    drawn = [r for b in s for r in b]
    assert sorted(drawn[:10]) == sorted(drawn[10:]) == list(range(10))


def test_small_datasets_give_short_sub_batches_instead_of_duplicates():
    df = _frame({"tiny": 3})
    s = _sampler(df, global_batch_size=8, sub_batch_size=4, num_steps=3)
    for b in s:
        assert sorted(b) == [0, 1, 2]


def test_an_excluded_dataset_in_the_contrastive_set_is_an_error():
    with pytest.raises(DataError, match="exclude_from_contrastive"):
        _sampler(_frame({"a": 5, "VOC2007": 5}), excluded=["VOC2007"])


def test_bad_batch_shapes_name_the_config_keys():
    df = _frame({"a": 5})
    with pytest.raises(ConfigError, match="multiple of"):
        _sampler(df, global_batch_size=10, sub_batch_size=4)
    with pytest.raises(ConfigError, match="sub_batch_size"):
        _sampler(df, global_batch_size=2, sub_batch_size=4)
    with pytest.raises(ConfigError, match="max_video_sub_batches"):
        _sampler(_frame({"v": 5}, video=("v",)), max_video_sub_batches=0)


def test_num_steps():
    assert num_steps_for(1000, 512, 2.0, None) == 4
    assert num_steps_for(1000, 512, 2.0, 7) == 7


def test_processes_get_disjoint_equal_slices_of_each_global_batch():
    df = _frame({"a": 30, "b": 5, "c": 50})
    full = list(_sampler(df, global_batch_size=12, sub_batch_size=4))
    shards = [
        list(_sampler(df, global_batch_size=12, sub_batch_size=4, rank=r, world_size=2))
        for r in range(2)
    ]
    for step, batch in enumerate(full):
        a, b = shards[0][step], shards[1][step]
        assert len(a) == len(b) == len(batch) // 2
        assert a + b == batch[: 2 * len(a)]
