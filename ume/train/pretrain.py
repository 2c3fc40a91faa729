"""Pretraining of the tiny backbones (rule ``pretrain_tiny``): give them what a real MLLM brings.

The base-model stage builds tiny models with random weights; a real Qwen-VL arrives
pretrained. This stage sits between the two for every role: a tiny backbone named in
``pretrain.roles`` is trained with a language-modelling objective (loss on the answer
only) on the image-to-text examples of :mod:`ume.data.pretraining` -- captions, boxes in
the T-CoT coordinates, regions and crops read back, key frames of events, page keywords --
with **every** weight trainable, vision tower included. A real backbone (``source: path``),
a role not listed, or ``pretrain.enabled: false`` passes through unchanged; the manifest
says which and why.

Roles of one family share one run (same tiny config, same seed: the same random init), so
the embedded default pretrains one Qwen3-VL for Embedder, Reasoner and Discriminator.
Output, under ``out``: ``<family>/model`` (a plain model folder) and ``<role>/backbone.json``
for every role (what later stages read, :func:`ume.models.stage.read_backbone`), and
``manifest.json`` with the loss curve summary and a held-out *probe* of what was learnt
(caption exact match, box IoU against a random box's, region / crop / page answers).

The loop is ``transformers.Trainer``; the examples are drawn on the fly from
``(pretrain.seed, index)``, so no data is stored. The stage is short (minutes on a CPU), so
it keeps no resumption checkpoints.

>>> pretrain_models(cfg, "results/default/models/init", "results/default/models/base")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ume.config import Config
from ume.data.pretraining import HELD_OUT, TASKS, Example, box_iou, example, task_schedule
from ume.errors import DataError
from ume.io import Manifest, atomic_path, checksum, write_json

log = logging.getLogger(__name__)

LABEL_IGNORE = -100


# --------------------------------------------------------------------------- tensors
def encode_example(ex: Example, processor) -> dict[str, Any]:
    """Model inputs of one example with ``labels`` on the answer (and its end-of-turn) only."""
    tok = processor.tokenizer
    full = processor.apply_chat_template(ex.messages(), tokenize=False)
    prompt = processor.apply_chat_template(
        ex.messages(with_answer=False), tokenize=False, add_generation_prompt=True
    )
    if not full.startswith(prompt):  # pragma: no cover - guards a chat-template change
        raise DataError("the chat template renders the prompt differently inside the full chat")
    enc = processor(text=[full], images=ex.images or None, return_tensors="pt")
    ids = enc["input_ids"][0]
    answer = tok(full[len(prompt) :].rstrip("\n"), add_special_tokens=False)["input_ids"]
    n = len(answer)
    if ids[len(ids) - n - 1 : len(ids) - 1].tolist() != answer:
        # the chat ends with "<|im_end|>\n": the answer ids sit right before the final newline
        raise DataError(f"answer tokens of a {ex.task} example are not where expected")
    labels = ids.clone().fill_(LABEL_IGNORE)
    labels[len(ids) - n - 1 : len(ids) - 1] = ids[len(ids) - n - 1 : len(ids) - 1]
    out = {"input_ids": ids, "labels": labels}
    for k in ("mm_token_type_ids", "pixel_values", "image_grid_thw"):
        if k in enc:
            out[k] = enc[k][0] if k == "mm_token_type_ids" else enc[k]
    return out


class PretrainData:
    """``steps * batch_size`` examples, each drawn and encoded when the Trainer asks for it,
    in order (one task per batch, see :func:`~ume.data.pretraining.task_schedule`)."""

    def __init__(self, cfg: Config, processor, offset: int = 0) -> None:
        p = cfg.pretrain
        self.cfg, self.processor, self.offset = p, processor, offset
        self.schedule = task_schedule(p.phases, p.batch_size, p.seed)

    def __len__(self) -> int:
        return len(self.schedule)

    def example(self, i: int) -> Example:
        p = self.cfg
        return example(
            self.schedule[i],
            p.seed,
            self.offset + i,
            image_size=p.image_size,
            doc_size=p.doc_size,
            num_frames=p.num_frames,
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        return encode_example(self.example(i), self.processor)


def collate(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch: ``attention_mask`` 0 and ``labels`` ignored on padding."""
    import torch

    t = max(len(r["input_ids"]) for r in rows)

    def pad(key: str, value: int):
        return torch.stack(
            [torch.nn.functional.pad(r[key], (0, t - len(r[key])), value=value) for r in rows]
        )

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", LABEL_IGNORE),
        "attention_mask": torch.stack(
            [
                torch.nn.functional.pad(
                    torch.ones_like(r["input_ids"]), (0, t - len(r["input_ids"]))
                )
                for r in rows
            ]
        ),
    }
    if any("mm_token_type_ids" in r for r in rows):
        batch["mm_token_type_ids"] = pad("mm_token_type_ids", 0)
    with_images = [r for r in rows if "pixel_values" in r]
    if with_images:
        batch["pixel_values"] = torch.cat([r["pixel_values"] for r in with_images])
        batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in with_images])
    return batch


# --------------------------------------------------------------------------- probe
_BOX_RE = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]")


def _box(text: str) -> list[int] | None:
    m = _BOX_RE.search(text)
    return [int(v) for v in m.groups()] if m else None


def _chat(ex: Example) -> list[dict[str, Any]]:
    """The example's user turn with its images in the parts (what ``chat_generate`` takes)."""
    imgs = iter(ex.images)
    content = [
        {"type": "image", "image": next(imgs)} if p["type"] == "image" else p for p in ex.content
    ]
    return [{"role": "user", "content": content}]


def probe(model, processor, cfg: Config, n: int) -> dict[str, Any]:
    """Greedy answers on ``n`` held-out examples per task, scored against the truth.

    ``exact``: answer equals the target; ``box_iou`` (ground): mean IoU of the answered box
    with the true one, beside ``random_box_iou`` of a box drawn uniformly (what an untrained
    model would get); ``key_frames_exact`` (video): the key frames named exactly.
    """
    from ume.models.backbone import chat_generate

    p = cfg.pretrain
    rng = np.random.default_rng([p.seed, 1])
    out: dict[str, Any] = {}
    was_training = model.training
    model.eval()
    try:
        used = {t for ph in p.phases for t, w in ph.tasks.items() if w > 0}
        for k, task in enumerate(t for t in TASKS if t in used):
            exs = [
                example(
                    task,
                    p.seed,
                    HELD_OUT + 1000 * k + i,
                    image_size=p.image_size,
                    doc_size=p.doc_size,
                    num_frames=p.num_frames,
                )
                for i in range(n)
            ]
            answers = chat_generate(
                model, processor, [_chat(e) for e in exs], max_new_tokens=48, batch_size=16
            )
            rec: dict[str, Any] = {
                "exact": float(
                    np.mean([a.strip() == e.target for a, e in zip(answers, exs, strict=True)])
                ),
                "example": {"target": exs[0].target, "answer": answers[0]},
            }
            if task == "ground":
                ious, rand = [], []
                for a, e in zip(answers, exs, strict=True):
                    b = _box(a)
                    ious.append(box_iou(b, e.truth["box"]) if b else 0.0)
                    x = np.sort(rng.integers(0, 1001, size=(2, 2)), axis=0)
                    rand.append(box_iou([x[0, 0], x[0, 1], x[1, 0], x[1, 1]], e.truth["box"]))
                rec |= {"box_iou": float(np.mean(ious)), "random_box_iou": float(np.mean(rand))}
            if task == "video":
                kf = [
                    json.dumps({"key_frames": e.truth["key_frames"]}) in a
                    for a, e in zip(answers, exs, strict=True)
                ]
                rec["key_frames_exact"] = float(np.mean(kf))
            out[task] = rec
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- one family
def pretrain_one(cfg: Config, folder: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Pretrain the model in ``folder``; save it to ``out_dir/model``; return its record."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed

    from ume.models.backbone import load_backbone
    from ume.train import reasoner_common as R

    p = cfg.pretrain
    out_dir = Path(out_dir)
    set_seed(p.seed)
    from ume.inputs import PixelBudget

    # the pixel budget every later stage applies (budgets): pretrained at the resolution the
    # model will see (a crop enlarged to budgets.image_min_tokens, a scene within the maximum)
    model, processor = load_backbone(
        folder, role="pretrain", budget=PixelBudget.from_config(cfg.budgets)
    )
    model.train()
    for prm in model.parameters():  # the vision tower learns too: it is what this stage is for
        prm.requires_grad_(True)
    data = PretrainData(cfg, processor)
    pad_id = processor.tokenizer.pad_token_id
    ckpt = out_dir.parent / f".{out_dir.name}.trainer"
    args = TrainingArguments(
        output_dir=str(ckpt),
        max_steps=p.steps,
        per_device_train_batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=p.seed,
        dataloader_num_workers=0,
        train_sampling_strategy="sequential",  # the schedule is drawn already, batch by batch
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=lambda rows: collate(rows, pad_id),
        callbacks=[R.train_log_callback(out_dir / "train_log.csv", out_dir / "train_log.png")],
    )
    trainer.remove_callback(PrinterCallback)
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    shutil.rmtree(ckpt, ignore_errors=True)
    t1 = time.time()
    scores = probe(model, processor, cfg, p.probe_examples) if p.probe_examples else {}
    probe_s = time.time() - t1
    model.eval()
    with atomic_path(out_dir / "model", is_dir=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    rows = R.read_log(out_dir / "train_log.csv")
    tasks = {t: data.schedule.count(t) for t in TASKS if t in data.schedule}
    return {
        "path": str((out_dir / "model").resolve()),
        "weights_sha256": checksum(out_dir / "model"),
        "steps": trainer.state.global_step,
        "examples": len(data),
        "examples_per_task": tasks,
        "train_loss": result.training_loss,
        "loss": R.log_summary(rows, "loss"),
        "train_seconds": round(seconds, 2),
        "probe_seconds": round(probe_s, 2),
        "probe": scores,
    }


# --------------------------------------------------------------------------- the stage
def pretrain_models(cfg: Config, init_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Every role's base model: pretrained (tiny roles in ``pretrain.roles``) or passed through.

    ``init_dir``: the base-model stage's folder (``<role>/backbone.json`` each). Writes
    ``out_dir/<role>/backbone.json`` for every role found there, and the manifest.
    """
    from ume.models.stage import ROLES, read_backbone, record_path

    init_dir, out_dir = Path(init_dir), Path(out_dir)
    p = cfg.pretrain
    manifest = Manifest("pretrain_tiny", cfg.sections())
    records: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}  # family -> pretraining record
    for role in ROLES:
        src = init_dir / role / "backbone.json"
        if not src.exists():
            continue
        rec = read_backbone(src)
        if rec.get("source") != "tiny":
            reason = f"real backbone (source: {rec.get('source')}): used as it is"
        elif not p.enabled:
            reason = "pretrain.enabled is false: the tiny model keeps its random weights"
        elif role not in p.roles:
            reason = (
                f"role not in pretrain.roles {p.roles}: the tiny model keeps its random weights"
            )
        else:
            reason = ""
        here = out_dir / role  # paths in a record are relative to it (results/ can move)
        if reason:
            out = rec | {
                "path": record_path(rec["path"], here),
                "pretrained": False,
                "pretrain": reason,
            }
        else:
            fam = rec["family"]
            if fam not in runs:
                log.info("pretraining the tiny %s (%s)", fam, rec["path"])
                runs[fam] = pretrain_one(cfg, rec["path"], out_dir / fam)
                runs[fam]["roles"] = []
            runs[fam]["roles"].append(role)
            run = runs[fam]
            out = rec | {
                "stage": "pretrain_tiny",
                "path": record_path(run["path"], here),
                "weights_sha256": run["weights_sha256"],
                "pretrained": True,
                "pretrain": f"pretrained ({run['steps']} steps), shared by the {fam} roles",
                "init_path": record_path(rec["path"], here),
            }
        records[role] = out
        write_json(out_dir / role / "backbone.json", out)
    manifest.record(models=records, pretraining=runs)
    manifest.write(out_dir)
    return records
