"""Gradient caching gives the plain full-batch step's loss and gradients (plain torch, the tiny
Embedder, and two gloo processes with gradient averaging)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from ume.train.gradcache import RandState, chunk, gradcache_step
from ume.train.losses import ddp_loss_scale, info_nce

pytestmark = pytest.mark.unit


class Tower(torch.nn.Module):
    def __init__(self, p_drop: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(p_drop),
            torch.nn.Linear(16, 5),
        )

    def forward(self, x):
        return F.normalize(self.net(x), dim=-1)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _loss(reps):
    return info_nce(reps[0], reps[1], temperature=0.05, gather=False)


@pytest.mark.parametrize(("size", "cache"), [(8, True), (3, False)])
def test_without_a_cache_every_chunk_is_embedded_once(size, cache):
    """One chunk per side (nothing to cache) or cache=False: the plain step, every chunk
    embedded once (not twice), the same loss and gradients."""
    g = torch.Generator().manual_seed(4)
    q, t = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    model, calls = Tower(p_drop=0.3), []

    def embed(x):
        calls.append(len(x))
        return model(x)

    torch.manual_seed(5)
    out = gradcache_step(embed, [chunk(q, size), chunk(t, size)], _loss, cache=cache)
    cached = _grads(model)
    model.zero_grad()
    torch.manual_seed(5)
    ref = _loss([model(q), model(t)])
    ref.loss.backward()
    assert calls == [len(c) for c in chunk(q, size)] * 2
    assert torch.allclose(out.loss, ref.loss.detach())
    for n, gr in _grads(model).items():
        assert torch.allclose(cached[n], gr, atol=1e-6), n


def test_chunk():
    assert chunk(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        chunk([1], 0)


@pytest.mark.parametrize("size", [1, 3, 16])
def test_gradcache_equals_the_plain_step_on_a_small_tower(size):
    g = torch.Generator().manual_seed(3)
    q, t = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
    model = Tower()
    out = gradcache_step(model, [chunk(q, size), chunk(t, size)], _loss)
    cached = _grads(model)
    model.zero_grad()
    ref = _loss([model(q), model(t)])
    ref.loss.backward()
    assert torch.allclose(out.loss, ref.loss.detach(), atol=1e-6)
    assert torch.allclose(out.accuracy, ref.accuracy)
    for n, gr in _grads(model).items():
        assert torch.allclose(cached[n], gr, atol=1e-6, rtol=1e-5), n


def test_the_second_forward_of_a_chunk_replays_its_dropout_mask():
    model = Tower(p_drop=0.5).train()
    seen: list[torch.Tensor] = []

    def embed(x):
        e = model(x)
        seen.append(e.detach().clone())
        return e

    x = torch.randn(8, 6)
    before = torch.get_rng_state()
    gradcache_step(embed, [chunk(x, 4), chunk(x + 1, 4)], _loss)
    first, second = seen[:4], seen[4:]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    # the caller's random stream advanced by pass 1 only, as with one plain forward per chunk
    after = torch.get_rng_state()
    torch.set_rng_state(before)
    with torch.no_grad():
        for c in chunk(x, 4) + chunk(x + 1, 4):
            model(c)
    assert torch.equal(torch.get_rng_state(), after)


def test_rand_state_replay_leaves_the_outside_stream_alone():
    st = RandState()
    a = torch.rand(3)
    after = torch.get_rng_state()
    with st.replay():
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(torch.get_rng_state(), after)


def test_gradcache_with_a_custom_backward_and_no_sync_hooks():
    model = Tower()
    calls: list[bool] = []
    syncs: list[str] = []

    class NoSync:
        def __enter__(self):
            syncs.append("off")

        def __exit__(self, *a):
            syncs.append("on")

    def backward(s, is_last):
        calls.append(is_last)
        s.backward()

    x = torch.randn(6, 6)
    gradcache_step(model, [chunk(x, 2), chunk(x, 3)], _loss, backward=backward, no_sync=NoSync)
    assert calls == [False, False, False, False, True]
    assert syncs == ["off", "on"] * 4  # every chunk but the last defers the all-reduce


# ----------------------------------------------------------------------- the tiny Embedder
@pytest.fixture(scope="module")
def tiny_embedder_and_inputs(tmp_path_factory):
    from PIL import Image

    from ume.config import LoraConfig, TinyModelConfig
    from ume.inputs import build_input
    from ume.items import Item
    from ume.models.embedder import Embedder
    from ume.models.tiny import build_tiny
    from ume.tcot.format import render_tcot

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is far faster on a busy machine
    root = tmp_path_factory.mktemp("gc")
    folder = build_tiny("qwen3_vl", TinyModelConfig(), root / "m")
    torch.manual_seed(0)
    emb = Embedder.from_pretrained(folder, lora=LoraConfig(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # LoRA B starts at zero, which would hide the A gradients
        for n, p in emb.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    paths = []
    for k in range(3):
        img = Image.new("RGB", (64, 64), (80 * k, 40, 200 - 60 * k))
        img.paste((255, 255, 0), (8 + 10 * k, 8, 40, 30 + 8 * k))
        paths.append(str(root / f"{k}.png"))
        img.save(paths[-1])
    q, t = [], []
    for i in range(10):
        colour = ["red", "green", "blue", "yellow", "purple"][i % 5]
        tq = render_tcot(f"a {colour} thing", colour, f"{colour} {i}", {"text_keywords": [colour]})
        q.append(build_input(Item(text=f"find the {colour} shape number {i}" + " x" * i), tq))
        if i % 3 == 2:
            item = Item("video", frames=tuple(paths), text=f"clip {i}")
            tt = render_tcot("frames", colour, f"{colour} clip", {"key_frames": [1, 3]})
        else:
            item = Item("image", image=paths[i % 3], inst="Represent the image")
            tt = render_tcot("box", colour, f"{colour} box", {"bbox_2d": [100, 100, 700, 600]})
        t.append(build_input(item, tt))
    yield emb, q, t
    torch.set_num_threads(threads)


def test_gradcache_equals_the_plain_step_on_the_tiny_embedder(tiny_embedder_and_inputs):
    emb, q, t = tiny_embedder_and_inputs
    emb.train()
    trainable = {n: p for n, p in emb.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    emb.zero_grad()
    out = gradcache_step(emb.embed_built, [chunk(q, 3), chunk(t, 4)], _loss)
    cached = {n: p.grad.clone() for n, p in trainable.items()}
    emb.zero_grad()
    ref = _loss([emb.embed_built(q), emb.embed_built(t)])
    ref.loss.backward()
    assert float(out.loss) == pytest.approx(float(ref.loss), abs=1e-5)
    assert float(out.accuracy) == float(ref.accuracy)
    worst = 0.0
    for n, p in trainable.items():
        scale = p.grad.abs().max().item() + 1e-12
        worst = max(worst, (cached[n] - p.grad).abs().max().item() / scale)
        assert torch.allclose(cached[n], p.grad, atol=1e-5, rtol=1e-4), n
    assert worst < 1e-3


# ----------------------------------------------------------------------- two gloo processes
W, N = 2, 8


def _data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(N, 6, generator=g), torch.randn(N, 6, generator=g)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=W)
    try:
        q, t = _data()
        mine = slice(rank * N // W, (rank + 1) * N // W)
        model = Tower()
        out = gradcache_step(
            model,
            [chunk(q[mine], 2), chunk(t[mine], 3)],
            lambda reps: info_nce(reps[0], reps[1], temperature=0.05),
            loss_scale=ddp_loss_scale(),
        )
        for p in model.parameters():  # what DDP / DeepSpeed do: average over processes
            dist.all_reduce(p.grad)
            p.grad /= W
        torch.save({"loss": out.loss, "grads": _grads(model)}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gradcache_across_two_processes_with_averaging_equals_one_full_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=W, start_method="spawn"
    )
    q, t = _data()
    model = Tower()
    ref = _loss([model(q), model(t)])
    ref.loss.backward()
    for rank in range(W):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert torch.allclose(got["loss"], ref.loss.detach(), atol=1e-6)
        for n, g in _grads(model).items():
            assert torch.allclose(got["grads"][n], g, atol=1e-5, rtol=1e-4), n
