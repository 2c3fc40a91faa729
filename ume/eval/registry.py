"""Task registry: every MMEB-V2 task, every UVRB dataset, and the synthetic suite.

(Filled in by the evaluation work; the dataclass is the contract the loaders use.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the benchmark's own task name (e.g. "ImageNet-1K", "MSRVTT")
    suite: str  # "mmeb" | "uvrb" | "synth"
    modality: str  # "image" | "video" | "visdoc" (MMEB); "video" (UVRB)
    category: str  # MMEB: CLS|QA|RET|GD|MRET|VisDoc sub-group; UVRB: TXT|CMP|VIS
    layout: str  # loader to use: "mmeb_image" | "mmeb_video_*" | "beir" | "uvrb"
    ranking: str  # "local" (own candidate list) | "global" (whole corpus)
    metric: str  # main metric, e.g. "hit@1", "ndcg_linear@5", "recall@10", "precision@1"
    groups: tuple[str, ...] = field(default=())  # UVRB ability columns (CG, FG, LC, S, T, PR)
