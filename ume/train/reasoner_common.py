"""What the two Reasoner stages (cold-start SFT, EG-RL) share: prompts as TRL rows, the
model folder they write, resumption, and the per-step training log (CSV + PNG).

A Reasoner stage writes ``<out>/model/`` (a plain transformers folder: LoRA merged in, the
processor beside it), ``<out>/backbone.json`` (what later stages read, the same record as
the base models', :func:`ume.models.stage.read_backbone`), ``<out>/train_log.csv`` and
``<out>/train_log.png``, and ``<out>/manifest.json``. Checkpoints go to a folder outside
``<out>`` (:func:`ume.launch.resumable.checkpoint_dir`) while training and are removed once
the model is saved; a stage started again after an interruption resumes from the last one if
it was made under the same :func:`fingerprint` (config and inputs), and starts afresh
otherwise (:func:`ume.launch.resumable.resume_point`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

from ume.config import BackboneConfig, Config, LoraConfig
from ume.errors import ConfigError, DataError
from ume.fingerprints import checksum, fingerprint_of, input_identity
from ume.inputs import PixelBudget, fit_chat_images, fit_chat_to_length
from ume.io import atomic_path, write_json, write_text
from ume.items import Item
from ume.models.stage import record_path
from ume.pair_table import PairTable, RowPolicy, read_pair_table
from ume.tcot.format import parse_tcot
from ume.tcot.prompts import tcot_messages
from ume.train.curves import Panel, plot_curves

log = logging.getLogger(__name__)

ROLE_OF_SIDE = {"qry": "query", "pos": "candidate"}


# --------------------------------------------------------------------------- rows
def read_rows(cfg: Config, path: str | Path, needs: tuple[str, ...] = ()) -> PairTable:
    """The stage's pairs, every row checked on entry, before a model is loaded: a bad row
    (a null image path, a missing or unreadable image, a null T-CoT among ``needs``) stops
    the stage naming file, row and column, or with ``data.on_bad_item: skip`` is left out
    and counted (``bad_rows`` in the manifest)."""
    return read_pair_table(
        path,
        policy=RowPolicy(cfg.data.on_bad_item, "data.on_bad_item"),
        needs=needs,
        tcot_parser=parse_tcot,
        media="open",  # TRL decodes the images: they must at least open
    )


# --------------------------------------------------------------------------- prompts
def prompt_and_images(item: Item, role: str) -> tuple[list[dict], list[str]]:
    """The Reasoner's chat for ``item`` with image payloads moved out, in TRL's dataset form.

    TRL fills ``{"type": "image"}`` placeholders, in order, from the ``images`` column;
    keeping paths out of the chat also keeps the Arrow schema of the parts uniform.

    >>> msgs, imgs = prompt_and_images(Item(modality="image", image="/a.png"), "query")
    >>> msgs[1]["content"][0], imgs
    ({'type': 'image'}, ['/a.png'])
    """
    msgs = tcot_messages(item, role)
    images: list[str] = []
    for m in msgs:
        parts = []
        for p in m["content"]:
            if p.get("type") == "image":
                images.append(p["image"])
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": p["text"]})
        m["content"] = parts
    return msgs, images


def image_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of ``rows`` whose ``images`` column (paths) decodes to PIL."""
    from datasets import Dataset, Image, List

    ds = Dataset.from_list(rows)
    return ds.cast_column("images", List(Image()))


# --------------------------------------------------------------------------- budgets, DeepSpeed
def budget(cfg: Config) -> PixelBudget:
    """The run's pixel budget (config ``budgets``), for every processor a stage loads."""
    return PixelBudget.from_config(cfg.budgets)


def deepspeed_file(key: str, value: str | None, gpu: bool) -> str | None:
    """The DeepSpeed config file of ``key`` (``sft.deepspeed``, ``egrl.deepspeed``) for TRL's
    config, resolved like ``train_embedder.deepspeed``; a missing file, or DeepSpeed on a
    machine without GPUs, is a :class:`~ume.errors.ConfigError` naming the key."""
    from ume.launch.distributed import resolve_config

    path = resolve_config(value)
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(
            f"{key}: {value} not found; give a DeepSpeed JSON (workflow/deepspeed/zero2.json, "
            "zero3.json) or null"
        )
    try:
        stage = json.loads(path.read_text()).get("zero_optimization", {}).get("stage", 0)
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"{key}: {value} is not a DeepSpeed JSON ({e})") from e
    if stage == 3:
        # save_reasoner merges LoRA and saves from rank 0's copy of the weights, which ZeRO-3
        # partitions across ranks: the saved model would be empty
        raise ConfigError(
            f"{key}: {value} is ZeRO-3, but the Reasoner stages save from rank 0's whole "
            "weights, which ZeRO-3 partitions; use ZeRO-2 (workflow/deepspeed/zero2.json)"
        )
    if not gpu:
        raise ConfigError(f"{key} = {value!r} needs GPUs; set it to null on CPU")
    return str(path)


def vision_collator(processor, max_length: int | None, key: str):
    """TRL's vision collator for prompt-completion rows, with the length rule of the Reasoner's
    chats: every image fitted to its pixel budget (frames to the per-frame budget), and an
    example whose prompt + completion exceeds ``max_length`` has its images lowered toward the
    minimum (:func:`ume.inputs.fit_chat_to_length`) instead of TRL cutting the T-CoT it
    imitates; an example that cannot fit even so is left out of its batch. Counts:
    ``.lowered`` and ``.dropped`` (the stage's manifest records them)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    class BudgetedCollator(DataCollatorForVisionLanguageModeling):
        lowered = 0
        dropped = 0

        def torch_call(self, examples):
            kept = []
            for ex in examples:
                images = ex.get("images") or []
                if not images or self.max_length is None:
                    ex["images"] = fit_chat_images(ex["prompt"], images, self.processor)
                    kept.append(ex)
                    continue
                completion = "".join(
                    part.get("text") or ""
                    for m in ex["completion"]
                    for part in (m["content"] if isinstance(m["content"], list) else [])
                )
                # the completion's tokens and its end of turn
                n_completion = (
                    len(self.processor.tokenizer.encode(completion, add_special_tokens=False)) + 2
                )
                try:
                    ex["images"], note = fit_chat_to_length(
                        ex["prompt"],
                        images,
                        self.processor,
                        self.max_length - n_completion,
                        key=key,
                    )
                except DataError as e:
                    self.dropped += 1
                    log.warning("%s: an example left out of its batch: %s", key, e)
                    continue
                self.lowered += note is not None
                kept.append(ex)
            if not kept:
                raise DataError(
                    f"no example of a batch fits {key} = {self.max_length} with its images at "
                    "their minimum budget; raise it"
                )
            return super().torch_call(kept)

    return BudgetedCollator(processor=processor, max_length=max_length, completion_only_loss=True)


# --------------------------------------------------------------------------- models
def lora_peft_config(cfg: LoraConfig):
    """peft LoRA on the language model's linear layers only (the vision tower stays frozen)."""
    from peft import LoraConfig as PeftLoraConfig

    names = "|".join(re.escape(m) for m in cfg.target_modules)
    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=rf".*language_model\..*\.(?:{names})",
        bias="none",
        task_type="CAUSAL_LM",
    )


def freeze_vision(model) -> None:
    """Full fine-tuning trains the language model only, as LoRA does."""
    inner = getattr(model, "model", None)
    visual = getattr(inner, "visual", None)
    if visual is not None:
        for p in visual.parameters():
            p.requires_grad_(False)


def save_reasoner(
    model, processor, out_dir: str | Path, *, role: str, source: str, bcfg: BackboneConfig
) -> dict[str, Any]:
    """Merge LoRA (if any), write ``<out>/model`` atomically and ``<out>/backbone.json``."""
    out_dir = Path(out_dir)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_path(out_dir / "model", is_dir=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    rec = {
        "role": "reasoner",
        "stage": role,
        "source": source,
        "family": getattr(model.config, "model_type", None),
        "path": record_path(out_dir / "model", out_dir),
        "dtype": bcfg.dtype,
        "attn_implementation": bcfg.attn_implementation,
        "weights_sha256": checksum(out_dir / "model"),
    }
    write_json(out_dir / "backbone.json", rec)
    return rec


def model_folder(path: str | Path) -> Path:
    """The model folder a stage input points at (``backbone.json``, a stage folder holding
    one, or a model folder); shared with evaluation."""
    from ume.eval.reason import resolve_model_folder

    return Path(resolve_model_folder(path))


def fingerprint(cfg: Config, inputs: list[str | Path | None]) -> str:
    """What a Reasoner stage's checkpoints must match to be resumed: the config sections (not
    ``launch``, where it runs) and the identity of its inputs (the pairs' parquet file, the
    ``backbone.json`` or model folder of each model it starts from or scores with).

    ``max_steps`` and ``epochs`` are left out (of every section): extending a run (a killed
    job rerun with more steps) is a legitimate resume, and the steps already done are the
    same. With a decaying learning-rate schedule the steps after the checkpoint follow the
    new length's schedule.
    """
    sections = cfg.sections()
    sections.pop("launch", None)
    sections = {
        k: {kk: vv for kk, vv in v.items() if kk not in ("max_steps", "epochs")}
        if isinstance(v, dict)
        else v
        for k, v in sections.items()
    }
    return fingerprint_of(sections, [input_identity(p) for p in inputs if p])


def drop_checkpoints(folder: str | Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- training log
# Columns first in the CSV (others follow in sorted order).
_FIRST = ("step", "wall_s", "loss", "reward", "reward_std")


def train_log_callback(csv_path: str | Path, png_path: str | Path | None = None):
    """A ``TrainerCallback`` writing one CSV row per logged step (and a PNG at the end).

    Resumption-safe: at the start of a resumed run the rows up to the resumed step are rebuilt
    from the checkpoint's ``state.log_history`` (each entry also gets its ``wall_s``), so they
    survive a workflow deleting the failed job's output folder, CSV included; rows logged after
    the last checkpoint are dropped. A checkpoint without a log history falls back to the CSV.
    """
    import time

    from transformers import TrainerCallback

    def logged(logs: dict) -> bool:
        return "train_runtime" not in logs and any(
            k in logs for k in ("loss", "reward", "train_loss")
        )

    def numbers(logs: dict) -> dict[str, float]:
        return {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }

    class TrainLog(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self.t0 = time.time()
            self.offset = 0.0

        def on_train_begin(self, args, state, control, **kw):
            step = state.global_step
            history = [e for e in state.log_history if logged(e) and e.get("step", 0) <= step]
            self.rows = [{"step": float(e["step"])} | numbers(e) for e in history]
            if not self.rows:
                self.rows = [r for r in read_log(csv_path) if r.get("step", 0) <= step]
            walls = [r["wall_s"] for r in self.rows if "wall_s" in r]
            self.offset = walls[-1] if walls else 0.0
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if not logged(logs):
                return
            row = {"step": float(state.global_step)}
            row["wall_s"] = round(self.offset + time.time() - self.t0, 3)
            row |= numbers(logs)
            # the Trainer appended this entry just before; checkpoints save the history
            last = state.log_history[-1] if state.log_history else None
            if last is not None and last.get("step") == state.global_step:
                last["wall_s"] = row["wall_s"]
            self.rows.append(row)
            write_log(csv_path, self.rows)

        def on_train_end(self, args, state, control, **kw):
            write_log(csv_path, self.rows)
            if png_path is not None:
                plot_curves(self.rows, png_path, log_panels(self.rows))

    return TrainLog()


def write_log(path: str | Path, rows: list[dict[str, float]]) -> None:
    keys = {k for r in rows for k in r}
    cols = [c for c in _FIRST if c in keys] + sorted(keys - set(_FIRST))
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    write_text(path, buf.getvalue())


def read_log(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open() as f:
        return [
            {k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)
        ]


def log_panels(rows: list[dict[str, float]]) -> list[Panel]:
    """The panels of a Reasoner's training log: rewards, length, KL, entropy, loss."""
    keys = {k for r in rows for k in r}
    rewards = tuple(sorted(k for k in keys if k.startswith("rewards/") and k.endswith("/mean")))
    short = {k: k.removeprefix("rewards/").removesuffix("/mean") for k in rewards}
    # groups in which a reward is flat teach GRPO nothing: the total's and each reward's share
    flat = tuple(
        [k for k in ("frac_reward_zero_std",) if k in keys]
        + sorted(k for k in keys if k.endswith("/frac_zero_std"))
    )
    flat_short = {k: k.removeprefix("rewards/").removesuffix("/frac_zero_std") for k in flat}
    return [
        Panel("total reward", ("reward",)),
        Panel("rewards (mean)", rewards, labels=short),
        Panel("groups with a flat reward", flat, labels=flat_short),
        Panel("response length", ("completions/mean_length",)),
        Panel("KL", ("kl",)),
        Panel("entropy", ("entropy",)),
        Panel("loss", ("loss",)),
    ]


def log_summary(rows: list[dict[str, float]], key: str = "reward", frac: float = 0.1) -> dict:
    """Mean of ``key`` over the first and last ``frac`` of the logged steps (at least one).

    >>> log_summary([{"step": i, "reward": float(i)} for i in range(1, 11)])
    {'steps': 10, 'first_mean': 1.0, 'last_mean': 10.0}
    """
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return {"steps": 0}
    k = max(1, math.ceil(len(vals) * frac))
    return {
        "steps": len(vals),
        "first_mean": sum(vals[:k]) / k,
        "last_mean": sum(vals[-k:]) / k,
    }


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
