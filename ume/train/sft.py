"""Cold-start SFT of the Reasoner on annotated T-CoTs (TRL ``SFTTrainer``).

Each annotated pair gives two examples: the query side (role ``query``) and the positive side
(role ``candidate``), each with the Reasoner prompt of its modality family
(:func:`~ume.tcot.prompts.tcot_messages`), its image or frames, and the annotated T-CoT as
the completion. Prompt-completion rows make TRL's loss completion-only.

Data (``sft.data``): ``contrastive`` — the contrastive split, so that with
``split.rule: disjoint`` the RL pairs stay unseen until EG-RL (the design card's choice);
``annotated`` — every pair that passed the relevance filter. T-CoTs without the three tags in
order are not imitated (counted in the manifest).

>>> train_sft(cfg, "results/default/split/contrastive.parquet",            # doctest: +SKIP
...           "results/default/models/base/reasoner/backbone.json",
...           "results/default/models/reasoner-sft")
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from ume.config import Config
from ume.errors import DataError
from ume.io import Manifest
from ume.items import Item
from ume.launch.resumable import checkpoint_dir, resume_point
from ume.tcot.format import check_format
from ume.train import reasoner_common

log = logging.getLogger(__name__)


def sft_rows(df: pd.DataFrame) -> tuple[list[dict], dict[str, int]]:
    """Prompt/completion/images rows of both sides of every pair, and what was skipped."""
    rows, skipped = [], {"no_tcot": 0, "bad_format": 0}
    for r in df.to_dict("records"):
        for side, role in reasoner_common.ROLE_OF_SIDE.items():
            tcot = r.get(f"{side}_tcot")
            if not isinstance(tcot, str) or not tcot.strip():
                skipped["no_tcot"] += 1
                continue
            if not check_format(tcot, variant="tags"):
                skipped["bad_format"] += 1
                continue
            prompt, images = reasoner_common.prompt_and_images(Item.from_row(r, side), role)
            completion = [{"role": "assistant", "content": [{"type": "text", "text": tcot}]}]
            rows.append({"prompt": prompt, "completion": completion, "images": images})
    return rows, skipped


def train_sft(
    cfg: Config,
    pairs_path: str | Path,
    reasoner: str | Path,
    out_dir: str | Path,
    checkpoints: str | Path | None = None,
) -> dict:
    """Train, merge and save the SFT Reasoner to ``out_dir``; returns the backbone record.

    ``reasoner``: the starting Reasoner (``backbone.json`` or model folder);
    ``checkpoints``: resumption folder (default :func:`~ume.launch.resumable.checkpoint_dir`;
    resumed only under the same :func:`~ume.train.reasoner_common.fingerprint`).
    """
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from ume.models.backbone import load_backbone
    from ume.models.device import choose_device

    s = cfg.sft
    out_dir = Path(out_dir)
    manifest = Manifest("sft_reasoner", cfg.sections(), [pairs_path])
    table = reasoner_common.read_rows(cfg, pairs_path, needs=("qry_tcot", "pos_tcot"))
    df = table.df
    if "relevant" in df.columns:  # sft.data: annotated reads the filter's table: its kept pairs
        df = df[df["relevant"]]
    rows, skipped = sft_rows(df)
    if not rows:
        raise DataError(f"{pairs_path}: no usable annotated T-CoT to imitate ({skipped})")
    start = reasoner_common.model_folder(reasoner)
    bcfg = cfg.models.reasoner
    dev = choose_device(bcfg.dtype, bcfg.attn_implementation, role="reasoner")
    model, processor = load_backbone(
        start,
        dtype=dev.dtype,
        attn_implementation=dev.attn_implementation,
        role="reasoner",
        budget=reasoner_common.budget(cfg),
    )
    model.train()
    peft_config = reasoner_common.lora_peft_config(s.lora) if s.lora.enabled else None
    if peft_config is None:
        reasoner_common.freeze_vision(model)
    ckpt = checkpoint_dir(out_dir, checkpoints)
    deepspeed = reasoner_common.deepspeed_file("sft.deepspeed", s.deepspeed, dev.gpu)
    args = TRLSFTConfig(
        output_dir=str(ckpt),
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps if s.max_steps is not None else -1,
        learning_rate=s.learning_rate,
        max_length=s.max_length,
        gradient_checkpointing=s.gradient_checkpointing,
        deepspeed=deepspeed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=cfg.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **dev.trainer_flags(),
    )
    # images fitted to the pixel budget; a T-CoT too long for sft.max_length lowers the
    # example's resolution instead of being cut by TRL's truncation
    collator = reasoner_common.vision_collator(processor, s.max_length, "sft.max_length")
    trainer = SFTTrainer(
        model=model,
        processing_class=processor,
        args=args,
        data_collator=collator,
        train_dataset=reasoner_common.image_dataset(rows),
        peft_config=peft_config,
        callbacks=[
            reasoner_common.train_log_callback(out_dir / "train_log.csv", out_dir / "train_log.png")
        ],
    )
    # checkpoints of another config or other inputs are cleared, never resumed
    fp = reasoner_common.fingerprint(cfg, [pairs_path, reasoner])
    resume = resume_point(ckpt, fp, is_main=args.process_index == 0)
    if resume:
        log.info("resuming SFT from %s", resume)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - t0
    if not trainer.accelerator.is_main_process:  # one writer (distributed runs)
        trainer.accelerator.wait_for_everyone()
        return {}
    rec = reasoner_common.save_reasoner(
        trainer.model, processor, out_dir, role="sft", source="sft", bcfg=bcfg
    )
    reasoner_common.drop_checkpoints(ckpt)
    rows_log = reasoner_common.read_log(out_dir / "train_log.csv")
    manifest.record(
        **table.manifest(),
        examples=len(rows),
        skipped=skipped,
        pairs=len(df),
        steps=trainer.state.global_step,
        resumed_from=resume,
        train_seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(1, trainer.state.global_step), 3),
        train_loss=result.training_loss,
        loss=reasoner_common.log_summary(rows_log, "loss"),
        lora=s.lora.enabled,
        deepspeed=deepspeed,
        budgets=cfg.budgets.model_dump(),
        length={"examples_lowered": collator.lowered, "examples_dropped": collator.dropped},
        start_model=str(start),
        backbone=rec,
    )
    manifest.write(out_dir)
    trainer.accelerator.wait_for_everyone()
    return rec
