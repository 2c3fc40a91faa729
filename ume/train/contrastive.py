"""Stage 2: contrastive training of the Embedder (rule ``train_embedder``).

``transformers.Trainer`` runs the loop: AdamW with weight decay, warm-up + cosine schedule,
gradient clipping, bf16 on GPU, DeepSpeed (``train_embedder.deepspeed`` is passed through as
the Trainer's ``deepspeed`` config, the paper's ZeRO-2), checkpoints of the trainable weights,
optimizer, scheduler and random states every ``save_steps``, and ``resume_from_checkpoint``.
:class:`ContrastiveTrainer` replaces only two things:

* the data: :class:`~ume.train.sampler.ContrastiveBatchSampler` (single-dataset sub-batches drawn
  by weight x size) over :class:`PairRows`; :class:`BatchBuilder` turns each batch into Embedder
  inputs with the one input builder (:func:`ume.inputs.build_input`, T-CoT + evidence), in the
  DataLoader (workers) — problems with an input (box outside the image, missing frame,
  undecodable image, unreadable T-CoT) are recorded there and counted, never raised;
* the step: :func:`~ume.train.gradcache.gradcache_step` with the symmetric InfoNCE of
  :mod:`ume.train.losses` over the whole global batch (gathered across processes).

Why the Trainer and not a plain loop: GradCache fits its one extension point,
``training_step`` (the step calls ``accelerator.backward`` once per chunk; DDP's ``no_sync``
and DeepSpeed's accumulation boundary keep the gradient reduction to the last chunk), and
everything else (optimizer, schedule, precision, DeepSpeed, checkpoint and resume) comes with
it. The DataLoader is not passed through accelerate's ``prepare``: the sampler itself gives
each process its slice of the global batch (accelerate's batch sharding would drop short
batches).

Resume (the protocol of :mod:`ume.launch.resumable`): checkpoints ``checkpoint-<step>`` live in
``checkpoint_dir`` (the rule passes ``results/<run>/checkpoints/train_embedder``, outside its
output folder) under a fingerprint of the config sections and the inputs; a rerun with the
same fingerprint continues from the last complete checkpoint — same batches, optimizer,
schedule and random state, so the result equals an uninterrupted run's — and one with another
fingerprint starts afresh. A finished run writes the merged model, ``backbone.json``, the
curves and the manifest, then deletes its checkpoints.
"""

from __future__ import annotations

import collections
import csv
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from ume.config import Config
from ume.errors import ConfigError, DataError
from ume.fingerprints import checksum, file_sha256, fingerprint_of
from ume.io import Manifest, write_json, write_text
from ume.items import Item
from ume.launch.resumable import checkpoint_dir as checkpoint_dir_for
from ume.launch.resumable import resume_point
from ume.models.device import DeviceChoice, choose_device
from ume.pair_table import PairTable, RowPolicy, read_pair_table
from ume.tcot.format import DEFAULT_FRAME_BASE, parse_tcot
from ume.train.curves import Panel, plot_curves
from ume.train.gradcache import chunk, gradcache_step
from ume.train.losses import ddp_loss_scale, info_nce, world
from ume.train.sampler import ContrastiveBatchSampler, num_steps_for

log = logging.getLogger(__name__)

TRAINABLE_NAME = "trainable.safetensors"
#: Columns of ``curves.csv``, one row per optimisation step.
CURVE_COLUMNS = (
    "step",
    "loss",
    "accuracy",
    "loss_q2t",
    "loss_t2q",
    "learning_rate",
    "grad_norm",
    "pairs",
    "inputs",
    "inputs_with_problems",
    "inputs_visual",
    "inputs_tcot",
    "inputs_evidence",
)
PROBLEM_KEYS = (
    "inputs",
    "inputs_with_problems",
    "inputs_visual",
    "inputs_tcot",
    "inputs_evidence",
    "inputs_length",  # visual tokens (or item text) given up to fit train_embedder.max_length
)
#: The accelerate version whose private ``GradientState._set_sync_gradients``
#: :meth:`ContrastiveTrainer._backward` calls under DeepSpeed (envs/gpu.yaml and
#: envs/requirements-cpu.txt pin it; tests/unit/test_pins.py fails on another one).
ACCELERATE_VERSION = "1.15.0"
MAX_PROBLEM_EXAMPLES = 20


def check_accelerate_version() -> None:
    """Refuse an accelerate whose private ``_set_sync_gradients`` the DeepSpeed path of the
    contrastive trainer was not written for."""
    import accelerate

    if accelerate.__version__ != ACCELERATE_VERSION:
        raise ConfigError(
            f"train_embedder.deepspeed: the contrastive trainer calls accelerate "
            f"{ACCELERATE_VERSION}'s private GradientState._set_sync_gradients but accelerate "
            f"{accelerate.__version__} is installed: install accelerate=={ACCELERATE_VERSION} "
            "(envs/gpu.yaml pins it), or port ContrastiveTrainer._backward and move the pins"
        )


class TrainingInterrupted(RuntimeError):
    """Raised by :class:`InterruptAfter` (tests: a run killed right after a checkpoint)."""


# --------------------------------------------------------------------------- data
def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class PairRows(Dataset):
    """The contrastive table as examples ``{"pair_id", "qry", "qry_tcot", "pos", "pos_tcot"}``
    (+ ``neg``/``neg_tcot`` with hard negatives); reading an example touches no media."""

    def __init__(self, df, *, sides: Sequence[str] = ("qry", "pos")) -> None:
        self.sides = tuple(sides)
        cols = ["pair_id", "dataset"] + [c for c in df.columns if c.startswith(self.sides)]
        self.cols = {c: df[c].to_numpy() for c in cols}
        self.n = len(df)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {c: v[i] for c, v in self.cols.items()}
        out: dict[str, Any] = {"pair_id": str(row["pair_id"]), "dataset": str(row["dataset"])}
        for s in self.sides:
            out[s] = Item.from_row(row, s)
            out[f"{s}_tcot"] = _str_or_none(row.get(f"{s}_tcot"))
        return out


@dataclass
class BatchBuilder:
    """DataLoader ``collate_fn``: examples -> per side, the chunks of collated model inputs.

    Returns ``{"groups": [[chunk batch, ...] per side], "pairs": n, "problems": counts,
    "problem_examples": [...]}``; a chunk batch is what :func:`ume.inputs.collate` returns.
    """

    processor: Any
    mode: str = "full"
    frame_base: int = 1
    chunk_size: int = 16
    max_length: int | None = None
    sides: tuple[str, ...] = ("qry", "pos")

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from ume.inputs import build_input, collate

        counts: collections.Counter = collections.Counter({k: 0 for k in PROBLEM_KEYS})
        bad: list[dict[str, Any]] = []
        groups = []
        for side in self.sides:
            built = [
                build_input(
                    ex[side], ex[f"{side}_tcot"], mode=self.mode, frame_base=self.frame_base
                )
                for ex in examples
            ]
            # collate first: the length rule adds its "length:" problems to the inputs
            groups.append(
                [
                    collate(list(c), self.processor, max_length=self.max_length)
                    for c in chunk(built, self.chunk_size)
                ]
            )
            for ex, b in zip(examples, built, strict=True):
                counts["inputs"] += 1
                if b.problems:
                    counts["inputs_with_problems"] += 1
                    for kind in {p.split(":", 1)[0] for p in b.problems}:
                        counts[f"inputs_{kind}"] += 1
                    if len(bad) < MAX_PROBLEM_EXAMPLES:
                        bad.append({"pair_id": ex["pair_id"], "side": side, "problems": b.problems})
        return {
            "groups": groups,
            "pairs": len(examples),
            "problems": dict(counts),
            "problem_examples": bad,
        }


# --------------------------------------------------------------------------- trainer
class ContrastiveTrainer(Trainer):
    """``Trainer`` with the contrastive batch sampler and a GradCache InfoNCE step.

    ``model(**chunk_batch)`` must return L2-normalised embeddings [b, D] (the Embedder does).
    Only trainable parameters are checkpointed (``trainable.safetensors``).
    """

    def __init__(
        self,
        *,
        batch_sampler: ContrastiveBatchSampler,
        collate_fn,
        temperature: float,
        gradcache: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn
        self.temperature = temperature
        self.gradcache = gradcache
        self._step_logs: dict[str, float] = {}
        self.problem_examples: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ data
    def get_train_dataloader(self) -> DataLoader:
        # Not passed through accelerate's prepare: the sampler already gives each process its
        # slice of the global batch (accelerate's sharding would drop short batches).
        workers = self.args.dataloader_num_workers
        return DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.collate_fn,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            prefetch_factor=2 if workers else None,
        )

    # ------------------------------------------------------------------ step
    def _embed(self, model, batch: dict[str, Any]) -> torch.Tensor:
        device = self.args.device
        batch = {
            k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        return model(**batch)

    def _backward(self, surrogate: torch.Tensor, is_last: bool) -> None:
        if self.is_deepspeed_enabled:
            # DeepSpeed reduces and steps at its accumulation boundary: the last chunk.
            # (_set_sync_gradients is private: written for accelerate ACCELERATE_VERSION.)
            check_accelerate_version()
            state = self.accelerator.gradient_state
            state._set_sync_gradients(is_last)
            try:
                self.accelerator.backward(surrogate, scale_wrt_gas=False)
            finally:
                state._set_sync_gradients(True)
        else:
            self.accelerator.backward(surrogate)

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        model.train()
        no_sync = None
        if world()[1] > 1 and not self.is_deepspeed_enabled:
            no_sync = functools.partial(self.accelerator.no_sync, model=model)

        def loss_fn(reps: list[torch.Tensor]):
            neg = reps[2] if len(reps) > 2 else None
            return info_nce(reps[0], reps[1], temperature=self.temperature, hard_negatives=neg)

        out = gradcache_step(
            functools.partial(self._embed, model),
            inputs["groups"],
            loss_fn,
            backward=self._backward,
            no_sync=no_sync,
            loss_scale=ddp_loss_scale(),
            cache=self.gradcache,
        )
        counts = self._sum_over_processes(
            [inputs["pairs"], *(inputs["problems"][k] for k in PROBLEM_KEYS)]
        )
        self._step_logs = {
            "loss": float(out.loss),
            "accuracy": float(out.accuracy),
            "loss_q2t": float(out.loss_q2t),
            "loss_t2q": float(out.loss_t2q),
            "pairs": counts[0],
        } | dict(zip(PROBLEM_KEYS, counts[1:], strict=True))
        room = MAX_PROBLEM_EXAMPLES - len(self.problem_examples)
        self.problem_examples += inputs["problem_examples"][: max(room, 0)]
        return out.loss.detach().to(self.args.device)

    def _sum_over_processes(self, values: list[int]) -> list[int]:
        if world()[1] == 1:
            return [int(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.long, device=self.args.device)
        dist.all_reduce(t)
        return [int(v) for v in t.tolist()]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Per-step entries carry the exact loss and the contrastive metrics; log_history is
        # saved in every checkpoint, so the curves and counts survive a resume.
        if "loss" in logs and self._step_logs:
            logs = {**logs, **self._step_logs}
            self._step_logs = {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ checkpoints
    def _trainable_names(self, model) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        names = self._trainable_names(model)
        sd = state_dict if state_dict is not None else model.state_dict()
        sd = {k: v.detach().cpu().contiguous() for k, v in sd.items() if k in names}
        save_file(sd, os.path.join(output_dir, TRAINABLE_NAME), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from safetensors.torch import load_file

        model = model or self.model
        path = Path(resume_from_checkpoint) / TRAINABLE_NAME
        if not path.is_file():
            raise DataError(f"{path}: checkpoint without trainable weights; delete {path.parent}")
        sd = load_file(str(path))
        missing = self._trainable_names(model) - set(sd)
        if missing:
            raise DataError(
                f"{path}: lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[:3]}); "
                f"it belongs to another model: delete {path.parent.parent}"
            )
        model.load_state_dict(sd, strict=False)


class LogSteps(TrainerCallback):
    """One line per step through ``logging`` (stderr, the rule's log) instead of the
    Trainer's stdout printer."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "accuracy" in logs:
            log.info(
                "step %d/%d loss %.4f in-batch acc %.3f lr %.3g grad norm %.3g problems %d/%d",
                state.global_step,
                state.max_steps,
                logs["loss"],
                logs["accuracy"],
                logs.get("learning_rate") or 0.0,
                logs.get("grad_norm") or 0.0,
                logs.get("inputs_with_problems", 0),
                logs.get("inputs", 0),
            )
        return control


class InterruptAfter(TrainerCallback):
    """Stop the process (raise) right after the checkpoint of step ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise TrainingInterrupted(
                f"interrupted after the checkpoint of step {state.global_step}"
            )
        return control


# --------------------------------------------------------------------------- the stage
def read_contrastive(
    path: str | Path, *, need_tcot: bool, policy: RowPolicy | None = None
) -> PairTable:
    """The contrastive set, every row checked (``data.on_bad_item``: stop at a bad row, or
    leave it out and count it); images must open, T-CoTs be strings when they are trained on."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; the split stage (rule split_data) writes it")
    needs = ("qry_tcot", "pos_tcot") if need_tcot else ()
    if need_tcot:
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception:  # unreadable: read_pair_table says so
            names = list(needs)
        missing = [c for c in needs if c not in names]
        if missing:
            raise DataError(
                f"{path}: no T-CoT columns {missing}; rerun the annotation stage, or set "
                "train_embedder.tcot_input: raw to train without T-CoTs"
            )
    table = read_pair_table(
        path,
        policy=policy or RowPolicy(),
        needs=needs,
        tcot_parser=parse_tcot,
        media="open",
    )
    if not len(table.df):
        raise DataError(f"{path}: no pairs to train on")
    return table


def read_weights(datasets_json: str | Path | None) -> dict[str, float]:
    """Per-dataset sampling weights from the data stage's ``datasets.json`` (default 1.0)."""
    if not datasets_json:
        return {}
    p = Path(datasets_json)
    if not p.exists():
        raise DataError(f"{p}: not found; the data stage (rule prepare_pairs) writes it")
    return {k: float(v.get("weight", 1.0)) for k, v in json.loads(p.read_text()).items()}


def _device_settings(cfg: Config) -> DeviceChoice:
    """The Embedder's device and precision (:func:`~ume.models.device.choose_device`);
    DeepSpeed only with GPUs."""
    b = cfg.models.embedder
    dev = choose_device(b.dtype, b.attn_implementation, role="embedder")
    if cfg.train_embedder.deepspeed and not dev.gpu:
        raise ConfigError(
            f"train_embedder.deepspeed = {cfg.train_embedder.deepspeed!r} needs GPUs; set it to "
            "null on CPU"
        )
    return dev


def _fingerprint(cfg: Config, inputs: Sequence[str | Path | None]) -> str:
    """Hash of what the run computes from: config sections (not where it runs) and inputs.

    Unlike the Reasoner stages', it keeps ``max_steps``/``epochs``: the warm-up + cosine
    schedule spans the number of steps, so a run of another length is another run."""
    sections = cfg.sections()
    sections.pop("launch", None)
    files = sorted(file_sha256(p) for p in inputs if p and Path(p).is_file())
    return fingerprint_of(sections, files)


def _enable_checkpointing(embedder) -> None:
    if hasattr(embedder, "gradient_checkpointing_enable"):
        embedder.gradient_checkpointing_enable()  # non-reentrant: works with frozen inputs
    else:
        log.warning("the Embedder has no gradient_checkpointing_enable; training without it")


def curve_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step (the last entry per step wins) with :data:`CURVE_COLUMNS`."""
    by_step: dict[int, dict[str, Any]] = {}
    for e in log_history:
        if "loss" in e and "accuracy" in e:
            by_step[int(e["step"])] = {c: e.get(c) for c in CURVE_COLUMNS} | {
                "step": int(e["step"])
            }
    return [by_step[s] for s in sorted(by_step)]


#: The panels of ``curves.png``.
CURVE_PANELS = (
    Panel(
        "loss",
        ("loss", "loss_q2t", "loss_t2q"),
        ylabel="InfoNCE loss",
        labels={"loss": "symmetric", "loss_q2t": "query->target", "loss_t2q": "target->query"},
    ),
    Panel("in-batch accuracy", ("accuracy",), ylabel="top-1 in global batch", ylim=(0, 1.02)),
)


def write_curves(rows: list[dict[str, Any]], csv_path: str | Path, png_path: str | Path) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CURVE_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(csv_path, buf.getvalue())
    plot_curves(rows, png_path, CURVE_PANELS)


def train_embedder(
    cfg: Config,
    contrastive_parquet: str | Path,
    base_backbone_json: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    *,
    datasets_json: str | Path | None = None,
    interrupt_after: int | None = None,
) -> Path:
    """Train the Embedder contrastively; write ``<out>/model`` (merged), ``backbone.json``
    (pointing at it), ``curves.csv``, ``curves.png`` and ``manifest.json``. Returns the model
    folder.

    ``checkpoint_dir``: resumption checkpoints (default ``<out>.checkpoints``); a rerun with
    the same config and inputs resumes from the last one, otherwise they are cleared.
    ``datasets_json``: the data stage's per-dataset weights (default: every weight 1.0).
    ``interrupt_after``: raise :class:`TrainingInterrupted` after the checkpoint of that step
    (tests of resume).
    """
    from transformers import set_seed

    from ume.inputs import PixelBudget, check_mode
    from ume.launch.distributed import resolve_config
    from ume.models.embedder import Embedder
    from ume.models.stage import read_backbone, record_path

    t0 = time.time()
    tc = cfg.train_embedder
    check_mode(tc.tcot_input)
    out = Path(out_dir)
    sides = ("qry", "pos", "neg") if tc.hard_negatives else ("qry", "pos")
    table = read_contrastive(
        contrastive_parquet,
        need_tcot=tc.tcot_input != "raw",
        policy=RowPolicy(cfg.data.on_bad_item, "data.on_bad_item"),
    )
    df = table.df
    if tc.hard_negatives and "neg_modality" not in df.columns:
        raise ConfigError(
            "train_embedder.hard_negatives is true but the contrastive set has no hard negatives "
            "(neg_* columns); set it to false"
        )
    weights = read_weights(datasets_json)
    backbone = read_backbone(base_backbone_json)
    dev = _device_settings(cfg)
    deepspeed = resolve_config(tc.deepspeed)
    if deepspeed is not None and not deepspeed.is_file():
        raise ConfigError(f"train_embedder.deepspeed: {tc.deepspeed} not found")
    if deepspeed is not None:
        check_accelerate_version()  # before the model loads, not at the first backward
    inputs = [contrastive_parquet, base_backbone_json, datasets_json]
    manifest = Manifest("train_embedder", cfg.sections(), [p for p in inputs if p])

    num_steps = num_steps_for(len(df), tc.global_batch_size, tc.epochs, tc.max_steps)
    ckpt = checkpoint_dir_for(out, checkpoint_dir)
    args = TrainingArguments(
        output_dir=str(ckpt),
        max_steps=num_steps,
        per_device_train_batch_size=max(
            1, tc.global_batch_size // int(os.environ.get("WORLD_SIZE", 1))
        ),
        gradient_accumulation_steps=1,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup_steps,
        weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm,
        optim="adamw_torch",
        bf16=dev.bf16,
        use_cpu=not dev.gpu,
        deepspeed=str(deepspeed) if deepspeed else None,
        logging_steps=1,
        save_strategy="steps",
        save_steps=tc.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        dataloader_num_workers=tc.dataloader_workers,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
    )
    is_main = args.process_index == 0
    # clears checkpoints of another config or other inputs (main process, then a barrier)
    last = resume_point(ckpt, _fingerprint(cfg, inputs), is_main=is_main)

    sampler = ContrastiveBatchSampler.from_frame(
        df,
        weights=weights,
        excluded=cfg.split.exclude_from_contrastive,
        global_batch_size=tc.global_batch_size,
        sub_batch_size=tc.sub_batch_size,
        num_steps=num_steps,
        max_video_sub_batches=tc.max_video_sub_batches,
        seed=cfg.seed,
        rank=args.process_index,
        world_size=args.world_size,
    )
    set_seed(cfg.seed)  # LoRA initialisation
    embedder = Embedder.from_pretrained(
        backbone["path"],
        dtype=dev.dtype,
        attn_implementation=dev.attn_implementation,
        lora=tc.lora if tc.lora.enabled else None,
        role="embedder",
        max_length=tc.max_length,
        budget=PixelBudget.from_config(cfg.budgets),
    )
    if tc.gradient_checkpointing:
        _enable_checkpointing(embedder)
    builder = BatchBuilder(
        embedder.processor,
        mode=tc.tcot_input,
        frame_base=DEFAULT_FRAME_BASE,
        chunk_size=tc.gradcache_chunk_size,
        max_length=tc.max_length,
        sides=sides,
    )
    trainer = ContrastiveTrainer(
        model=embedder,
        args=args,
        train_dataset=PairRows(df, sides=sides),
        batch_sampler=sampler,
        collate_fn=builder,
        temperature=tc.temperature,
        gradcache=tc.gradcache,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogSteps())
    if interrupt_after is not None:
        trainer.add_callback(InterruptAfter(interrupt_after))
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)

    model_dir = out / "model"
    if is_main:
        embedder.save_merged(model_dir)  # atomic
        write_json(
            out / "backbone.json",  # what later stages read (ume.models.stage.read_backbone)
            {
                "role": "embedder",
                "stage": "train_embedder",
                "source": "train_embedder",
                "family": backbone.get("family"),
                "path": record_path(model_dir, out),
                "dtype": cfg.models.embedder.dtype,
                "attn_implementation": cfg.models.embedder.attn_implementation,
                "weights_sha256": checksum(model_dir),
                # what the Embedder was trained on: EG-RL's outcome reward embeds the same
                "input": {
                    "tcot_input": tc.tcot_input,
                    "max_length": tc.max_length,
                    "frame_base": DEFAULT_FRAME_BASE,
                    "budgets": cfg.budgets.model_dump(),
                },
            },
        )
        rows = curve_rows(trainer.state.log_history)
        write_curves(rows, out / "curves.csv", out / "curves.png")
        totals = {k: int(sum(r.get(k) or 0 for r in rows)) for k in PROBLEM_KEYS}
        manifest.record(
            **table.manifest(),
            steps=trainer.state.global_step,
            pairs=len(df),
            datasets={
                d.name: {
                    "size": d.size,
                    "weight": d.weight,
                    "probability": float(p),
                    "video": d.video,
                }
                for d, p in zip(sampler.datasets, sampler.probabilities, strict=True)
            },
            world_size=args.world_size,
            device="cuda" if dev.gpu else "cpu",
            dtype=dev.dtype,
            attn_implementation=dev.attn_implementation,
            deepspeed=str(deepspeed) if deepspeed else None,
            budgets=cfg.budgets.model_dump(),
            resumed_from=Path(last).name if last else None,
            trainable_parameters=sum(p.numel() for p in embedder.parameters() if p.requires_grad),
            first={k: rows[0][k] for k in ("loss", "accuracy")} if rows else None,
            final={k: rows[-1][k] for k in ("loss", "accuracy")} if rows else None,
            input_problems=totals
            | {"note": "counted per input build: an input drawn twice counts twice"},
            problem_examples=trainer.problem_examples,
            train_runtime_s=result.metrics.get("train_runtime"),
            wall_time_s=round(time.time() - t0, 2),
        )
        manifest.write(out)
        shutil.rmtree(ckpt, ignore_errors=True)
    return model_dir
