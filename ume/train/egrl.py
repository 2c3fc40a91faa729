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
   of each pair, ``per_device_batch_size x steps_per_generation`` pairs per process, and
   one dataset for all processes of a step. Each process thus sees whole pairs in its local
   generation batch, which is what its reward functions receive.
3. **Rewards that read the structure from the columns.** The outcome and process rewards
   (:mod:`ume.train.rewards`) split the batch by ``side``, embed every rollout once with the
   frozen Embedder (shared input builder, evidence crops and key frames included), and
   score query rollouts against all target rollouts and back. In-batch negatives are the
   other pairs of the process's generation batch (same dataset). One scorer object is
   shared by both rewards, so the Embedder runs once per batch.

The dataset has an ``images`` column; TRL does not accept a batch that mixes prompts with
and without images (a text query beside an image positive), which :class:`EGRLTrainer`
fixes by giving text-only prompts an empty image list.

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
from ume.data.pairs import Item
from ume.errors import ConfigError, DataError
from ume.io import Manifest, write_json
from ume.launch.resumable import checkpoint_dir, resume_point
from ume.tcot.grounding import grounding_scores
from ume.train import reasoner as R
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


# --------------------------------------------------------------------------- data
def rl_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Two TRL rows per pair (query side, positive side) with the columns the rewards read."""
    rows = []
    for r in df.to_dict("records"):
        for side in (QUERY, TARGET):
            item = Item.from_row(r, side)
            prompt, images = R.prompt_and_images(item, R.ROLE_OF_SIDE[side])
            rows.append(
                {
                    "prompt": prompt,
                    "images": images,
                    "pair_id": str(r["pair_id"]),
                    "side": side,
                    "dataset": str(r["dataset"]),
                    "item": item_json(item),
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
                f"egrl.per_device_batch_size: a step needs {need} pairs of one dataset "
                f"({self.block} per block x {self.procs} processes) but the largest RL dataset "
                f"has {most}; lower egrl.per_device_batch_size (or gradient_accumulation_steps)"
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
    chats = [tcot_messages(it, R.ROLE_OF_SIDE[side]) for _, side, it in rows]
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


def grpo_args(cfg: Config, checkpoints: Path, weights: list[float]):
    """TRL ``GRPOConfig`` of the run (batch in rollouts: 2 sides x G x pairs)."""
    from trl import GRPOConfig

    g = cfg.egrl
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
        per_device_train_batch_size=2 * g.num_generations * g.per_device_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
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
        **R.device_kwargs(cfg.models.reasoner),
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
    the same :func:`~ume.train.reasoner.fingerprint`).
    ``tcot_lengths``: the annotated T-CoT lengths (``annotate/tcot_lengths.json``);
    ``egrl.max_completion_length`` is checked against them before any model loads.
    ``embedder_backend`` / ``discriminator_backend``: ready backends instead (tests).
    """
    from ume.models.backbone import load_backbone
    from ume.tcot.limits import check_limit, fraction_cut, read_lengths
    from ume.train import frozen

    g = cfg.egrl
    out_dir = Path(out_dir)
    lengths = read_lengths(tcot_lengths) if tcot_lengths is not None else None
    if lengths is not None:
        check_limit(
            "egrl.max_completion_length", g.max_completion_length, lengths, str(tcot_lengths)
        )
    ckpt = checkpoint_dir(out_dir, checkpoints)
    manifest = Manifest("egrl", cfg.sections(), [rl_path])
    try:
        df = pd.read_parquet(rl_path)
    except Exception as e:
        raise DataError(f"{rl_path}: cannot read the RL pairs ({e})") from e
    train_df, held_df = split_heldout(df, g.heldout_pairs_per_dataset, cfg.seed)
    if train_df.empty:
        raise DataError(f"{rl_path}: no RL pairs left to train on")

    if embedder_backend is None and (g.use_outcome_reward or g.use_process_reward):
        m = cfg.models.embedder
        folder = R.model_folder(embedder) if embedder else None
        embedder_backend = frozen.make_embedder(
            g, folder, dtype=m.dtype, attn=m.attn_implementation
        )
    if discriminator_backend is None and g.use_process_reward:
        m = cfg.models.discriminator
        folder = R.model_folder(discriminator) if discriminator else None
        discriminator_backend = frozen.make_discriminator(
            g, folder, dtype=m.dtype, attn=m.attn_implementation
        )
    scorer = make_scorer(g, embedder_backend, discriminator_backend, seed=cfg.seed)
    funcs, weights = reward_functions(g, scorer)

    start = R.model_folder(reasoner)
    bcfg = cfg.models.reasoner
    model, processor = load_backbone(
        start, dtype=bcfg.dtype, attn_implementation=bcfg.attn_implementation, role="reasoner"
    )
    start_heldout = heldout_scores(model, processor, held_df, scorer, g)
    model.train()
    peft_config = R.lora_peft_config(g.lora) if g.lora.enabled else None
    if peft_config is None:
        R.freeze_vision(model)

    args = grpo_args(cfg, ckpt, weights)
    Trainer = egrl_trainer_class()
    Trainer.pairs_per_block = g.per_device_batch_size * args.steps_per_generation
    Trainer.pair_seed = cfg.seed
    trainer = Trainer(
        model=model,
        processing_class=processor,
        reward_funcs=funcs,
        args=args,
        train_dataset=R.image_dataset(rl_rows(train_df)),
        peft_config=peft_config,
        callbacks=[R.train_log_callback(out_dir / "train_log.csv", out_dir / "train_log.png")],
    )
    # checkpoints of another config or other inputs are cleared, never resumed
    fp = R.fingerprint(cfg, [rl_path, reasoner, embedder, discriminator])
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
    rec = R.save_reasoner(final_model, processor, out_dir, role="egrl", source="egrl", bcfg=bcfg)
    R.drop_checkpoints(ckpt)
    heldout = {"start": start_heldout, "final": final_heldout, "start_model": str(start)}
    write_json(out_dir / "heldout.json", heldout)
    log_rows = R.read_log(out_dir / "train_log.csv")
    manifest.record(
        pairs=len(train_df),
        heldout_pairs=len(held_df),
        datasets=sorted(train_df["dataset"].unique().tolist()),
        rewards={f.__name__: w for f, w in zip(funcs, weights, strict=True)},
        preset=g.preset,
        steps=trainer.state.global_step,
        resumed_from=resume,
        train_seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(1, steps_run), 3),
        rollouts_per_step=2
        * g.num_generations
        * g.per_device_batch_size
        * g.gradient_accumulation_steps,
        vllm=bool(args.use_vllm),
        reward_summary=R.log_summary(log_rows, "reward"),
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
