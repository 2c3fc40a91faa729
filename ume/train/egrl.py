"""EG-RL: GRPO of the Reasoner guided by the frozen Embedder (TRL ``GRPOTrainer``).

Design: how pair-wise rewards fit TRL's per-prompt rollouts
-----------------------------------------------------------
TRL rolls out ``num_generations`` (G) completions per prompt and calls every reward function
once per *generation batch* with all of its completions, the dataset columns repeated per
completion as keyword arguments, and normalises advantages within each prompt's G rollouts.
EG-RL needs more: a query's rollouts are scored against the rollouts of its positive and of
the other pairs of the same step (method.md, stage 3). So:

1. **Two prompts per pair.** The RL set becomes two rows per pair (:func:`rl_rows`): the
   query side (``side="qry"``, prompt for role ``query``) and the positive side
   (``side="pos"``, role ``candidate``), sharing ``pair_id``; ``item`` carries the side as
   JSON (what the Embedder input builder needs). GRPO groups stay per prompt: a query's G
   rollouts compete with each other, and so do a positive's.
2. **A sampler that keeps pairs and datasets together.** :class:`PairBatchSampler` replaces
   TRL's ``RepeatSampler`` with the same contract (each index repeated G times in a row,
   each generation batch repeated ``num_iterations x steps_per_generation`` times) but
   builds every generation batch from *one dataset* and from *complete pairs*: both rows
   of each pair, ``egrl.pairs_per_device`` pairs per process, and one dataset for all
   processes of a step. Each process thus sees whole pairs in its local generation batch,
   which is what its reward functions receive.
4. **TRL's batch layout** (:func:`batch_layout`). One optimisation step is one generation
   batch: ``per_device_train_batch_size = micro_batch_groups x G`` rollouts per forward /
   backward pass (one prompt group, or a few), ``gradient_accumulation_steps =
   steps_per_generation = 2 x pairs_per_device / micro_batch_groups`` micro-batches, so that
   TRL generates ``2 x G x pairs_per_device`` rollouts per process at once (what the rewards
   see) and trains on them G (or a few G) sequences at a time.
5. **False negatives** (:func:`pair_labels`): pairs of a dataset that share their query or
   their positive (a class label, an image with several captions) carry one ``label``; the
   rewards mask them for each other.
3. **Rewards that read the structure from the columns.** The outcome and process rewards
   (:mod:`ume.train.rewards`) split the batch by ``side``, embed every rollout once with the
   frozen Embedder (shared input builder, evidence crops and key frames included), and
   score query rollouts against all target rollouts and back. In-batch negatives are the
   other pairs of the process's generation batch (same dataset). One scorer object is
   shared by both rewards, so the Embedder runs once per batch.

The dataset has an ``images`` column; TRL does not accept a batch that mixes prompts with
and without images (a text query beside an image positive), which :class:`EGRLTrainer`
fixes by giving text-only prompts an empty image list; it also fits every prompt image to
the pixel budget (frames to the per-frame budget) and within ``egrl.max_prompt_length``
before TRL processes it. Both go through private TRL methods, written for
:data:`TRL_VERSION` (pinned in envs/gpu.yaml; :func:`check_trl_version`).

Rollouts come from vLLM (``egrl.use_vllm``) when CUDA and vllm are present, else from HF
generate. Output: ``<out>/model`` (LoRA merged), ``backbone.json``, ``train_log.csv/png``
(per step: each reward's mean/std, total reward, response length, KL, entropy, step time),
``heldout.json`` (outcome reward of the starting and the trained Reasoner on held-out RL
pairs) and ``manifest.json``. Interrupted runs resume from ``<out>/checkpoints``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Sampler

from ume.config import Config, EGRLConfig
from ume.errors import ConfigError, DataError
from ume.fingerprints import bytes_sha256
from ume.inputs import check_tcot_fits, fit_chat_to_length
from ume.io import Manifest, write_json
from ume.items import Item
from ume.launch.resumable import checkpoint_dir, resume_point
from ume.tcot.grounding import grounding_scores
from ume.train import reasoner_common
from ume.train.rewards import (
    QUERY,
    TARGET,
    EGRLScorer,
    FormatReward,
    item_json,
    make_scorer,
    reward_functions,
)

log = logging.getLogger(__name__)

#: The TRL version whose private ``GRPOTrainer._generate``,
#: ``_generate_and_score_completions`` and ``_get_per_token_logps_and_entropies``
#: :class:`EGRLTrainer` overrides (envs/gpu.yaml and
#: envs/requirements-cpu.txt pin it; tests/unit/test_pins.py fails on another one).
TRL_VERSION = "1.16.0"


def check_trl_version() -> None:
    """Refuse a TRL whose private methods the trainer was not written for."""
    import trl

    if trl.__version__ != TRL_VERSION:
        raise ConfigError(
            f"EG-RL overrides private methods of TRL {TRL_VERSION} (GRPOTrainer._generate, "
            "_generate_and_score_completions, _get_per_token_logps_and_entropies) but TRL "
            f"{trl.__version__} is installed: install "
            f"trl=={TRL_VERSION} (envs/gpu.yaml pins it), or port EGRLTrainer in "
            "ume/train/egrl.py and move the pins"
        )


# --------------------------------------------------------------------------- data
def pair_labels(df: pd.DataFrame) -> list[str]:
    """Per pair (row of ``df``): a label shared by the pairs of its dataset that it shares a
    query or a positive with, directly or through another pair (connected components), so
    that the rewards never take such a pair as a negative (false negatives of
    classification sets: many images, one class name as positive)."""
    parent = list(range(len(df)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    recs = df.to_dict("records")
    seen: dict[tuple[str, str, str], int] = {}
    for i, r in enumerate(recs):
        for side in (QUERY, TARGET):
            key = (str(r["dataset"]), side, item_json(Item.from_row(r, side)))
            j = seen.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    return [
        f"{recs[find(i)]['dataset']}:{bytes_sha256(str(recs[find(i)]['pair_id']).encode())[:16]}"
        for i in range(len(recs))
    ]


def rl_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Two TRL rows per pair (query side, positive side) with the columns the rewards read."""
    rows = []
    labels = pair_labels(df)
    for r, label in zip(df.to_dict("records"), labels, strict=True):
        for side in (QUERY, TARGET):
            item = Item.from_row(r, side)
            prompt, images = reasoner_common.prompt_and_images(
                item, reasoner_common.ROLE_OF_SIDE[side]
            )
            rows.append(
                {
                    "prompt": prompt,
                    "images": images,
                    "pair_id": str(r["pair_id"]),
                    "side": side,
                    "dataset": str(r["dataset"]),
                    "item": item_json(item),
                    "label": label,
                }
            )
    return rows


def split_heldout(
    df: pd.DataFrame, per_dataset: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training pairs, held-out pairs): ``per_dataset`` pairs of each dataset held out."""
    if per_dataset <= 0:
        return df, df.iloc[0:0]
    held = []
    for _, g in df.groupby("dataset", sort=True):
        held += list(g.sample(n=min(per_dataset, len(g)), random_state=seed).index)
    return df.drop(index=held), df.loc[held]


class PairBatchSampler(Sampler[int]):
    """Indices for GRPO: one dataset per step, complete pairs, each row repeated G times.

    ``pair_index``: dataset -> list of (query row, positive row). Per step: one dataset,
    ``num_processes`` blocks of ``pairs_per_block`` pairs; a block is, pair after pair,
    the query row G times then the positive row G times. The step's indices are emitted
    ``repeat`` times (TRL reuses one generation for ``num_iterations x steps_per_generation``
    dataloader batches). Datasets with fewer pairs than a step are left out (warned).
    """

    def __init__(
        self,
        pair_index: dict[str, list[tuple[int, int]]],
        *,
        num_generations: int,
        pairs_per_block: int,
        num_processes: int = 1,
        repeat: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.G = num_generations
        self.block = pairs_per_block
        self.procs = num_processes
        self.repeat = repeat
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        need = self.block * self.procs
        self.pairs = {d: p for d, p in sorted(pair_index.items()) if len(p) >= need}
        left_out = {d: len(p) for d, p in pair_index.items() if len(p) < need}
        if left_out:
            log.warning("EG-RL: datasets with fewer than %d pairs left out: %s", need, left_out)
        if not self.pairs:
            most = max((len(p) for p in pair_index.values()), default=0)
            raise ConfigError(
                f"egrl.pairs_per_device: a step needs {need} pairs of one dataset "
                f"({self.block} per process x {self.procs} processes) but the largest RL "
                f"dataset has {most}; lower egrl.pairs_per_device, or draw more RL pairs "
                "(split.rl_counts / split.rl_per_dataset)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def steps(self) -> list[tuple[str, list[tuple[int, int]]]]:
        """The epoch's steps: (dataset, pairs of the step), in order."""
        rng = random.Random(f"{self.seed}:{self.epoch}")
        need = self.block * self.procs
        out = []
        for d, pairs in self.pairs.items():
            pairs = list(pairs)
            if self.shuffle:
                rng.shuffle(pairs)
            out += [(d, pairs[i : i + need]) for i in range(0, len(pairs) - need + 1, need)]
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[int]:
        for _, pairs in self.steps():
            step: list[int] = []
            for q, p in pairs:
                step += [q] * self.G + [p] * self.G
            for _ in range(self.repeat):
                yield from step

    def __len__(self) -> int:
        need = self.block * self.procs
        n_steps = sum(len(p) // need for p in self.pairs.values())
        return n_steps * need * 2 * self.G * self.repeat


def pair_index(ds) -> dict[str, list[tuple[int, int]]]:
    """dataset -> [(query row, positive row)] of an EG-RL dataset (pairs with both sides)."""
    where: dict[tuple[str, str], dict[str, int]] = {}
    for i, (d, p, s) in enumerate(zip(ds["dataset"], ds["pair_id"], ds["side"], strict=True)):
        where.setdefault((d, p), {})[s] = i
    out: dict[str, list[tuple[int, int]]] = {}
    for (d, _), sides in where.items():
        if QUERY in sides and TARGET in sides:
            out.setdefault(d, []).append((sides[QUERY], sides[TARGET]))
    return out


def egrl_trainer_class():
    """``GRPOTrainer`` with the pair sampler and mixed text/image batches (imports TRL)."""
    from trl import GRPOTrainer

    class EGRLTrainer(GRPOTrainer):
        pairs_per_block = 1
        pair_seed = 0
        prompt_limit: int | None = None  # egrl.max_prompt_length
        prompts_lowered = 0  # prompts whose images were lowered to fit it

        def _get_train_sampler(self, dataset=None):
            ds = dataset if dataset is not None else self.train_dataset
            return PairBatchSampler(
                pair_index(ds),
                num_generations=self.num_generations,
                pairs_per_block=self.pairs_per_block,
                num_processes=self.accelerator.num_processes,
                repeat=self.num_iterations * self.args.steps_per_generation,
                seed=self.pair_seed,
            )

        def _generate_and_score_completions(self, inputs):
            # Every prompt image fitted to the pixel budget (frames: the per-frame budget) and
            # the prompt within egrl.max_prompt_length (resolution gives way), before TRL
            # hands the images to the processor (TRL 1.16: a list of row dicts).
            for x in inputs:
                images = x.get("images")
                if images:
                    x["images"], note = fit_chat_to_length(
                        x["prompt"],
                        list(images),
                        self.processing_class,
                        self.prompt_limit or 10**9,
                        key="egrl.max_prompt_length",
                    )
                    type(self).prompts_lowered += note is not None
            return super()._generate_and_score_completions(inputs)

        def _get_per_token_logps_and_entropies(
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            pixel_values=None,
            image_grid_thw=None,
            num_images=None,
            **kw,
        ):
            # TRL runs the model on chunks of batch_size rows (one prompt group of G rollouts
            # with batch_layout) and slices the images per chunk; a chunk of text-only prompts
            # (a text query's group) would hand the vision tower an empty tensor. Such a chunk
            # goes without images; chunks with images are TRL's own.
            parent = super()._get_per_token_logps_and_entropies
            args = (model, input_ids, attention_mask, logits_to_keep)
            per_row = ("token_type_ids", "mm_token_type_ids")
            n = input_ids.size(0)
            bs = batch_size or n
            plain = (
                pixel_values is None
                or image_grid_thw is None
                or num_images is None
                or any(v is not None for k, v in kw.items() if k not in per_row)
                or all(sum(num_images[i : i + bs]) for i in range(0, n, bs))
            )
            if plain:
                return parent(
                    *args,
                    batch_size=batch_size,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    pixel_values=pixel_values,
                    image_grid_thw=image_grid_thw,
                    num_images=num_images,
                    **kw,
                )
            import torch

            img_at = [0, *torch.tensor(num_images).cumsum(0).tolist()]
            row_at = [0, *image_grid_thw.prod(-1).cumsum(0).tolist()]
            logps, ents, auxs = [], [], []
            for start in range(0, n, bs):
                end = min(start + bs, n)
                i0, i1 = img_at[start], img_at[end]
                images = (
                    {
                        "pixel_values": pixel_values[row_at[i0] : row_at[i1]],
                        "image_grid_thw": image_grid_thw[i0:i1],
                        "num_images": list(num_images[start:end]),
                    }
                    if i1 > i0
                    else {}
                )
                rows = {k: (v[start:end] if v is not None else None) for k, v in kw.items()}
                lp, ent, aux = parent(
                    model,
                    input_ids[start:end],
                    attention_mask[start:end],
                    logits_to_keep,
                    batch_size=None,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    **images,
                    **rows,
                )
                logps.append(lp)
                ents.append(ent)
                auxs.append(aux)
            entropies = torch.cat(ents, 0) if compute_entropy else None
            aux_loss = torch.stack(auxs).mean() if compute_aux_loss else None
            return torch.cat(logps, 0), entropies, aux_loss

        def _generate(self, prompts):
            # TRL marks a prompt without images as None, and the processor rejects a batch
            # mixing None with image lists; an empty list is what it accepts. (TRL 1.16:
            # (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images,
            # tool_images).)
            out = list(super()._generate(prompts))
            if len(out) != 8 or not isinstance(out[6], list | type(None)):
                raise RuntimeError(
                    "EGRLTrainer._generate knows TRL 1.16's 8-tuple; this TRL returns "
                    f"{len(out)} values: update the mixed image/text batch fix in ume/train/egrl.py"
                )
            if isinstance(out[6], list):
                out[6] = [x if x is not None else [] for x in out[6]]
            return tuple(out)

    return EGRLTrainer


# --------------------------------------------------------------------------- held-out
def heldout_scores(
    model, processor, df: pd.DataFrame, scorer: EGRLScorer, cfg: EGRLConfig
) -> dict[str, Any]:
    """Outcome reward of greedy T-CoTs (one rollout per side) on held-out pairs, scored per
    dataset (in-batch negatives: the dataset's other held-out pairs), and the format rate.

    All T-CoTs are generated in one pass (batches of 16): on small models the decoding
    steps, not the batch size, set the time.
    """
    from ume.models.backbone import chat_generate
    from ume.tcot.prompts import tcot_messages

    if df.empty:
        return {"pairs": 0}
    recs = df.sort_values(["dataset", "pair_id"]).to_dict("records")
    rows = [(r, side, Item.from_row(r, side)) for r in recs for side in (QUERY, TARGET)]
    chats = [tcot_messages(it, reasoner_common.ROLE_OF_SIDE[side]) for _, side, it in rows]
    was_training = model.training
    model.eval()
    try:
        texts = chat_generate(
            model, processor, chats, max_new_tokens=cfg.max_completion_length, batch_size=16
        )
    finally:
        model.train(was_training)
    fmt = FormatReward(cfg.format_variant, max_chars=32 * cfg.max_completion_length)
    out: dict[str, Any] = {"pairs": len(df), "per_dataset": {}}
    outcome, fmt_all, acc, margin = [], [], [], []
    for d in sorted({str(r["dataset"]) for r in recs}):
        idx = [i for i, (r, _, _) in enumerate(rows) if str(r["dataset"]) == d]
        js = [item_json(rows[i][2]) for i in idx]
        t = [texts[i] for i in idx]
        s = scorer.score(
            t, [str(rows[i][0]["pair_id"]) for i in idx], [rows[i][1] for i in idx], js
        )
        f = fmt([[]] * len(t), t, item=js)
        out["per_dataset"][d] = {"outcome": sum(s.outcome) / len(t), "format": sum(f) / len(f)}
        outcome += s.outcome
        fmt_all += f
        acc += s.acc
        margin += s.margin
    n = len(outcome)
    out.update(
        rollouts=n,
        outcome_mean=sum(outcome) / n,
        acc_mean=sum(acc) / n,
        margin_mean=sum(margin) / n,
        format_rate=sum(fmt_all) / n,
        # evidence boxes against the ground truth, where the items have it (synthetic data)
        grounding=grounding_scores(texts, [(it.gt or {}).get("boxes") for _, _, it in rows]),
    )
    return out


# --------------------------------------------------------------------------- the stage
def _use_vllm(cfg: EGRLConfig) -> bool:
    if not cfg.use_vllm:
        return False
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return True
    log.warning("egrl.use_vllm is true but CUDA or vllm is missing here: HF generate is used")
    return False


def batch_layout(g: EGRLConfig) -> dict[str, int]:
    """TRL's batch arguments for ``g`` (module docstring, 4): per-device batch of
    ``micro_batch_groups`` prompt groups, gradient accumulation and generation covering the
    ``2 x pairs_per_device`` prompt groups of one optimisation step.

    >>> batch_layout(EGRLConfig(num_generations=8, pairs_per_device=8))
    {'per_device_train_batch_size': 8, 'gradient_accumulation_steps': 16, 'steps_per_generation': 16}
    """
    steps = 2 * g.pairs_per_device // g.micro_batch_groups
    return {
        "per_device_train_batch_size": g.micro_batch_groups * g.num_generations,
        "gradient_accumulation_steps": steps,
        "steps_per_generation": steps,
    }


def grpo_args(cfg: Config, checkpoints: Path, weights: list[float]):
    """TRL ``GRPOConfig`` of the run (:func:`batch_layout`; ``egrl.deepspeed``)."""
    from trl import GRPOConfig

    from ume.models.device import choose_device

    g, m = cfg.egrl, cfg.models.reasoner
    dev = choose_device(m.dtype, m.attn_implementation, role="reasoner")
    deepspeed = reasoner_common.deepspeed_file("egrl.deepspeed", g.deepspeed, dev.gpu)
    vllm = _use_vllm(g)
    extra: dict[str, Any] = {}
    if vllm:
        extra = {
            "use_vllm": True,
            "vllm_mode": g.vllm_mode,
            "vllm_max_model_length": g.max_prompt_length + g.max_completion_length,
        }
        if g.vllm_mode == "server":
            extra["vllm_server_base_url"] = g.vllm_server_url
    return GRPOConfig(
        output_dir=str(checkpoints),
        **batch_layout(g),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        learning_rate=g.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=g.beta,
        epsilon=g.epsilon,
        loss_type=g.loss_type,
        num_train_epochs=g.epochs,
        max_steps=g.max_steps if g.max_steps is not None else -1,
        reward_weights=weights,
        gradient_checkpointing=g.gradient_checkpointing,
        deepspeed=deepspeed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=g.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=cfg.seed,
        shuffle_dataset=False,  # the pair sampler shuffles (seeded, per epoch)
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_completions=False,
        **extra,
        **dev.trainer_flags(),
    )


def train_egrl(
    cfg: Config,
    rl_path: str | Path,
    reasoner: str | Path,
    embedder: str | Path | None,
    discriminator: str | Path | None,
    out_dir: str | Path,
    checkpoints: str | Path | None = None,
    *,
    tcot_lengths: str | Path | None = None,
    embedder_backend=None,
    discriminator_backend=None,
) -> dict:
    """Run EG-RL and write the Reasoner to ``out_dir``; returns the backbone record.

    ``reasoner``, ``embedder``, ``discriminator``: model folders or ``backbone.json`` files
    (the starting Reasoner, the trained Embedder, the Discriminator; the last two only for
    local backends, the Discriminator only with the process reward). ``checkpoints``:
    resumption folder (default :func:`~ume.launch.resumable.checkpoint_dir`; resumed only under
    the same :func:`~ume.train.reasoner_common.fingerprint`).
    ``tcot_lengths``: the annotated T-CoT lengths (``annotate/tcot_lengths.json``);
    ``egrl.max_completion_length`` is checked against them before any model loads.
    ``embedder_backend`` / ``discriminator_backend``: ready backends instead (tests).
    The Embedder's record (``embedder``, also with a server backend) says what it was trained
    on: the rewards embed rollouts in that input mode, token limit and pixel budget.
    """
    from ume.models.backbone import load_backbone
    from ume.models.device import choose_device
    from ume.tcot.limits import check_limit, fraction_cut, read_lengths
    from ume.train import reward_models

    check_trl_version()
    g = cfg.egrl
    out_dir = Path(out_dir)
    lengths = read_lengths(tcot_lengths) if tcot_lengths is not None else None
    if lengths is not None:
        check_limit(
            "egrl.max_completion_length", g.max_completion_length, lengths, str(tcot_lengths)
        )
    ckpt = checkpoint_dir(out_dir, checkpoints)
    manifest = Manifest("egrl", cfg.sections(), [rl_path])
    table = reasoner_common.read_rows(cfg, rl_path)
    df = table.df
    train_df, held_df = split_heldout(df, g.heldout_pairs_per_dataset, cfg.seed)
    if train_df.empty:
        raise DataError(f"{rl_path}: no RL pairs left to train on")

    budget = reasoner_common.budget(cfg)
    pairwise = g.use_outcome_reward or g.use_process_reward
    emb_input = reward_models.embedder_input(embedder)
    if pairwise and emb_input.max_length is not None:
        # a rollout of egrl.max_completion_length tokens must fit the Embedder's input whole
        check_tcot_fits(
            emb_input.max_length,
            {"egrl.max_completion_length": g.max_completion_length},
            emb_input.budget or budget,
        )
    if embedder_backend is None and pairwise:
        m = cfg.models.embedder
        folder = reasoner_common.model_folder(embedder) if embedder else None
        embedder_backend = reward_models.make_embedder(
            g, folder, dtype=m.dtype, attn=m.attn_implementation, settings=emb_input
        )
    if discriminator_backend is None and g.use_process_reward:
        m = cfg.models.discriminator
        folder = reasoner_common.model_folder(discriminator) if discriminator else None
        discriminator_backend = reward_models.make_discriminator(
            g,
            folder,
            dtype=m.dtype,
            attn=m.attn_implementation,
            budget=budget,
            expected=m.path if m.source == "path" else None,
        )
    scorer = make_scorer(
        g,
        embedder_backend,
        discriminator_backend,
        seed=cfg.seed,
        mode=emb_input.mode,
        frame_base=emb_input.frame_base,
    )
    funcs, weights = reward_functions(g, scorer)

    start = reasoner_common.model_folder(reasoner)
    bcfg = cfg.models.reasoner
    dev = choose_device(bcfg.dtype, bcfg.attn_implementation, role="reasoner")
    model, processor = load_backbone(
        start,
        dtype=dev.dtype,
        attn_implementation=dev.attn_implementation,
        role="reasoner",
        budget=budget,
    )
    start_heldout = heldout_scores(model, processor, held_df, scorer, g)
    model.train()
    peft_config = reasoner_common.lora_peft_config(g.lora) if g.lora.enabled else None
    if peft_config is None:
        reasoner_common.freeze_vision(model)

    args = grpo_args(cfg, ckpt, weights)
    Trainer = egrl_trainer_class()
    # one generation batch per optimisation step (batch_layout): a process's block of the
    # step is its pairs_per_device pairs, 2 x G x pairs_per_device rollouts
    Trainer.pairs_per_block = g.pairs_per_device
    Trainer.pair_seed = cfg.seed
    Trainer.prompt_limit = g.max_prompt_length
    trainer = Trainer(
        model=model,
        processing_class=processor,
        reward_funcs=funcs,
        args=args,
        train_dataset=reasoner_common.image_dataset(rl_rows(train_df)),
        peft_config=peft_config,
        callbacks=[
            reasoner_common.train_log_callback(out_dir / "train_log.csv", out_dir / "train_log.png")
        ],
    )
    # checkpoints of another config or other inputs are cleared, never resumed
    fp = reasoner_common.fingerprint(cfg, [rl_path, reasoner, embedder, discriminator])
    resume = resume_point(ckpt, fp, is_main=args.process_index == 0)
    if resume:
        log.info("resuming EG-RL from %s", resume)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - t0
    steps_run = trainer.state.global_step - (_step_of(resume) if resume else 0)

    if not trainer.accelerator.is_main_process:  # one writer (distributed runs)
        trainer.accelerator.wait_for_everyone()
        return {}
    final_model = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
    final_heldout = heldout_scores(final_model, processor, held_df, scorer, g)
    rec = reasoner_common.save_reasoner(
        final_model, processor, out_dir, role="egrl", source="egrl", bcfg=bcfg
    )
    reasoner_common.drop_checkpoints(ckpt)
    heldout = {"start": start_heldout, "final": final_heldout, "start_model": str(start)}
    write_json(out_dir / "heldout.json", heldout)
    log_rows = reasoner_common.read_log(out_dir / "train_log.csv")
    manifest.record(
        **table.manifest(),
        pairs=len(train_df),
        heldout_pairs=len(held_df),
        datasets=sorted(train_df["dataset"].unique().tolist()),
        rewards={f.__name__: w for f, w in zip(funcs, weights, strict=True)},
        preset=g.preset,
        steps=trainer.state.global_step,
        resumed_from=resume,
        train_seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(1, steps_run), 3),
        rollouts_per_step=2 * g.num_generations * g.pairs_per_device * args.world_size,
        trl_batch={
            **batch_layout(g),
            "generation_batch_size": args.generation_batch_size,
            "num_generations": args.num_generations,
            "world_size": args.world_size,
        },
        deepspeed=args.deepspeed,
        embedder_input=emb_input.to_dict(),
        budgets=cfg.budgets.model_dump(),
        prompts_lowered=Trainer.prompts_lowered,
        vllm=bool(args.use_vllm),
        reward_summary=reasoner_common.log_summary(log_rows, "reward"),
        scorer=scorer.totals,
        discriminator=_discriminator_record(g, discriminator, discriminator_backend),
        tcot_tokens={k: v for k, v in lengths.items() if k != "histogram"} if lengths else None,
        annotated_tcots_cut=fraction_cut(lengths, g.max_completion_length) if lengths else None,
        start_model=str(start),
        heldout={k: v.get("outcome_mean") for k, v in heldout.items() if isinstance(v, dict)},
        backbone=rec,
    )
    manifest.write(out_dir)
    trainer.accelerator.wait_for_everyone()
    return rec


def _discriminator_record(g: EGRLConfig, folder, backend) -> dict[str, Any] | None:
    """Which Discriminator judged the process reward (the manifest says it)."""
    if not g.use_process_reward:
        return None
    return {
        "backend": g.discriminator_backend,
        "class": type(backend).__name__ if backend is not None else None,
        "model": str(folder) if g.discriminator_backend == "local" and folder else None,
        "server": g.discriminator_server.url if g.discriminator_backend == "server" else None,
    }


def _step_of(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[-1])
