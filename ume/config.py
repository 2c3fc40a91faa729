"""Typed configuration: one dataclass per section, loaded from YAML and checked.

The dataclasses are the single source of truth: the JSON schema that the Snakefile validates
against (``workflow/schemas/config.schema.json``) is generated from them by
``python -m ume schema`` (a test checks the committed file is current). Every field carries a
description in ``metadata["doc"]``; ``Literal`` types list the allowed values.

>>> cfg = load_config("config/config.yaml")  # doctest: +SKIP
>>> cfg.data.synthetic.image_size            # doctest: +SKIP
64
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ume.errors import ConfigError
from ume.models.offline import looks_like_hub_id


def _f(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: _copy(d), metadata={"doc": doc}, **kw)
    return field(default=default, metadata={"doc": doc}, **kw)


def _copy(d: Any) -> Any:
    import copy

    return copy.deepcopy(d)


# --------------------------------------------------------------------------- models
@dataclass
class TinyModelConfig:
    hidden_size: int = _f(64, "text hidden size of the tiny model (vision out size matches)")
    num_layers: int = _f(2, "decoder layers of the tiny language model")
    num_heads: int = _f(4, "attention heads (head_dim = hidden_size / num_heads)")
    num_kv_heads: int = _f(2, "key/value heads (grouped-query attention)")
    intermediate_size: int = _f(128, "MLP width of the tiny language model")
    vision_depth: int = _f(2, "vision transformer blocks of the tiny model")
    vision_hidden_size: int = _f(32, "width of the tiny vision transformer")
    vision_heads: int = _f(2, "attention heads of the tiny vision transformer")
    patch_size: int | None = _f(
        None, "vision patch side in pixels (null: the family's own, Qwen3-VL 16, Qwen2-VL 14)"
    )
    image_min_tokens: int = _f(
        1, "pixel budget of the tiny image processor, lower bound, in merged visual tokens"
    )
    image_max_tokens: int = _f(16, "pixel budget, upper bound, in merged visual tokens")
    initializer_range: float = _f(
        0.02, "std of the random initial weights (the real configs' 0.02 suits widths of 1000+)"
    )
    vocab_size: int = _f(1024, "byte-level BPE vocabulary trained locally (before special tokens)")
    seed: int = _f(0, "seed of the random initialisation (same seed -> same weights)")


@dataclass
class BackboneConfig:
    source: Literal["tiny", "path"] = _f(
        "tiny", "'tiny': build a random-initialised model locally; 'path': load from `path`"
    )
    family: Literal["qwen3_vl", "qwen2_vl"] = _f(
        "qwen3_vl", "architecture class (transformers Qwen3-VL or Qwen2-VL)"
    )
    path: str | None = _f(None, "local folder of a real backbone (source: path); never a hub id")
    dtype: Literal["float32", "bfloat16", "float16"] = _f(
        "float32", "weights dtype: float32 on CPU, bfloat16 on GPU"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = _f(
        "sdpa", "attention kernel: sdpa on CPU, flash_attention_2 on GPU when installed"
    )


@dataclass
class ModelsConfig:
    tiny: TinyModelConfig = _f(TinyModelConfig(), "shape of the tiny models (source: tiny)")
    embedder: BackboneConfig = _f(BackboneConfig(), "the Embedder backbone")
    reasoner: BackboneConfig = _f(BackboneConfig(), "the Reasoner backbone (writes T-CoTs)")
    discriminator: BackboneConfig = _f(
        BackboneConfig(), "frozen Discriminator of the process reward"
    )
    annotator: BackboneConfig = _f(
        BackboneConfig(), "MLLM that annotates training data (annotate.backend: hf)"
    )


@dataclass
class PretrainPhaseConfig:
    steps: int = _f(100, "optimisation steps of this phase")
    tasks: dict[str, float] = _f(
        {"crop": 1.0},
        "sampling weight of each pretraining task in this phase (caption, ground, region, "
        "crop, video, document; see ume/data/pretraining.py)",
    )


@dataclass
class PretrainConfig:
    enabled: bool = _f(
        True, "pretrain tiny backbones before every other stage (false: they stay random)"
    )
    roles: list[Literal["embedder", "reasoner", "discriminator", "annotator"]] = _f(
        ["embedder", "reasoner", "discriminator", "annotator"],
        "roles whose tiny backbone is pretrained (roles of one family share one run); "
        "real backbones (source: path) are never pretrained",
    )
    seed: int = _f(0, "seed of the pretraining examples and of training")
    phases: list[PretrainPhaseConfig] = _f(
        [
            PretrainPhaseConfig(100, {"crop": 1.0}),
            PretrainPhaseConfig(
                200, {"caption": 1.0, "ground": 1.0, "region": 1.0, "crop": 0.5, "video": 0.5}
            ),
        ],
        "curriculum: phases run in order, each drawing its batches from its own task mix "
        "(objects that fill the image first: a random vision tower cannot yet pick a small "
        "object out of a scene)",
    )
    batch_size: int = _f(16, "examples per step")
    learning_rate: float = _f(2e-3, "peak learning rate (AdamW)")
    lr_scheduler: Literal["cosine", "constant", "linear"] = _f(
        "cosine", "schedule after warm-up, over all phases"
    )
    warmup_steps: int = _f(20, "linear warm-up steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (0: no clipping)")
    image_size: int = _f(96, "side of the pretraining scenes, pixels")
    doc_size: int = _f(128, "side of the pretraining document pages, pixels")
    num_frames: int = _f(8, "frames per pretraining video")
    probe_examples: int = _f(16, "held-out examples per task scored after training (manifest)")

    @property
    def steps(self) -> int:
        return sum(ph.steps for ph in self.phases)


# --------------------------------------------------------------------------- data
@dataclass
class SyntheticConfig:
    seed: int = _f(0, "seed of the generator (same seed -> byte-identical data)")
    image_size: int = _f(64, "side of the square synthetic images, pixels")
    doc_size: int = _f(128, "side of the square rendered document pages, pixels")
    num_frames: int = _f(8, "frames per synthetic video")
    shapes_per_image: int = _f(3, "coloured shapes drawn in each image")
    train_pairs_per_dataset: int = _f(32, "training pairs written per synthetic training dataset")
    eval_queries: int = _f(16, "queries per synthetic benchmark task")
    eval_candidates: int = _f(8, "candidates per query (local ranking tasks)")
    eval_corpus: int = _f(32, "corpus size of global-ranking tasks (visdoc, UVRB)")


@dataclass
class SourceDatasetConfig:
    weight: float = _f(1.0, "sampling weight of the dataset (paper Table 5)")
    cap: int | None = _f(None, "at most this many pairs from the dataset (null: no cap)")


@dataclass
class RealSourcesConfig:
    mmeb_train_root: str | None = _f(None, "local copy of TIGER-Lab/MMEB-train (image tasks)")
    mmeb_train_image_root: str | None = _f(
        None, "folder the MMEB-train image paths are relative to (default: mmeb_train_root)"
    )
    llava_hound_root: str | None = _f(None, "local copy of the LLaVA-Hound video training data")
    vidore_root: str | None = _f(None, "local copy of the ViDoRe training set (colpali train)")
    visrag_root: str | None = _f(None, "local copy of the VisRAG training sets")
    num_frames: int = _f(8, "frames sampled uniformly per training video (keep = eval.num_frames)")
    datasets: dict[str, SourceDatasetConfig] = _f(
        {}, "per-dataset weight and cap; datasets not listed are not loaded"
    )


@dataclass
class DataConfig:
    source: Literal["synthetic", "real"] = _f(
        "synthetic", "'synthetic': generate the embedded benchmark; 'real': read local copies"
    )
    on_bad_item: Literal["error", "skip"] = _f(
        "error", "a corrupt image / missing frames / malformed row: stop, or skip and count it"
    )
    synthetic: SyntheticConfig = _f(SyntheticConfig(), "the synthetic benchmark generator")
    real: RealSourcesConfig = _f(RealSourcesConfig(), "the paper's training sources")


# --------------------------------------------------------------------------- annotation
@dataclass
class OracleConfig:
    wrong_evidence_rate: float = _f(
        0.1, "fraction of T-CoTs whose evidence is wrong (box on another object, wrong frames)"
    )
    missing_evidence_rate: float = _f(0.05, "fraction of T-CoTs written without evidence")
    seed: int = _f(0, "seed of the oracle's error draws")


@dataclass
class HFAnnotatorConfig:
    batch_size: int = _f(4, "prompts per generate call (left padding)")
    max_new_tokens: int = _f(64, "T-CoT length limit in tokens")
    temperature: float = _f(0.0, "0: greedy decoding")


@dataclass
class ServerConfig:
    url: str | None = _f(None, "base URL of an OpenAI-compatible server, e.g. http://host:8000/v1")
    model: str | None = _f(None, "model name the server serves")
    api_key_env: str = _f("OPENAI_API_KEY", "environment variable holding the API key (if any)")
    timeout_s: float = _f(120.0, "seconds per request")
    max_retries: int = _f(3, "retries per request on connection errors")
    max_tokens: int = _f(1024, "T-CoT length limit in tokens")
    concurrency: int = _f(8, "requests in flight at once")


@dataclass
class AnnotateConfig:
    backend: Literal["oracle", "hf", "server"] = _f(
        "oracle", "who writes T-CoTs: ground truth (synthetic), a local MLLM, or a server"
    )
    oracle: OracleConfig = _f(OracleConfig(), "the ground-truth annotator for synthetic data")
    hf: HFAnnotatorConfig = _f(HFAnnotatorConfig(), "local transformers MLLM (models.annotator)")
    server: ServerConfig = _f(ServerConfig(), "OpenAI-compatible chat server")


@dataclass
class FilterConfig:
    enabled: bool = _f(True, "run the relevance filter (keep pairs judged 'No' = not conflicting)")
    backend: Literal["same", "oracle", "hf", "server"] = _f(
        "same", "judge backend; 'same' uses annotate.backend"
    )


@dataclass
class SplitConfig:
    rule: Literal["disjoint", "overlap"] = _f(
        "disjoint",
        "'disjoint': RL pairs are held out of the contrastive set; "
        "'overlap': RL pairs are drawn from the contrastive set and stay in it",
    )
    rl_per_dataset: int = _f(8, "RL pairs drawn per RL dataset (paper: 1k-2k, Table 6)")
    rl_datasets: list[str] | None = _f(None, "datasets of the RL set (null: every dataset)")
    exclude_from_contrastive: list[str] = _f(
        [], "datasets kept out of contrastive training (paper: HatefulMemes, N24News, VOC2007)"
    )
    seed: int = _f(0, "seed of the split")


# --------------------------------------------------------------------------- training stages
@dataclass
class LoraConfig:
    enabled: bool = _f(True, "train LoRA adapters (false: full fine-tuning)")
    r: int = _f(64, "LoRA rank (paper: 64 for 2B, 96 for 4B)")
    alpha: int = _f(128, "LoRA alpha (paper: 128 for 2B, 192 for 4B)")
    dropout: float = _f(0.05, "LoRA dropout")
    target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "language-model linear layers that get adapters (vision tower stays frozen)",
    )


@dataclass
class EmbedderTrainConfig:
    tcot_input: Literal["full", "answer_only", "no_evidence", "raw"] = _f(
        "full", "Embedder input: T-CoT + evidence, answer only, T-CoT without evidence, raw input"
    )
    lora: LoraConfig = _f(LoraConfig(), "LoRA of the Embedder")
    temperature: float = _f(0.02, "InfoNCE temperature (logit scale 1/temperature = 50)")
    global_batch_size: int = _f(512, "pairs per optimisation step (paper: 512 for 2B, 256 for 4B)")
    sub_batch_size: int = _f(64, "pairs per single-dataset sub-batch")
    gradcache_chunk_size: int = _f(16, "pairs per forward/backward chunk of gradient caching")
    gradcache: bool = _f(
        True,
        "gradient caching (memory of one chunk, a second forward per chunk); false: every "
        "chunk keeps its graph (memory of the whole batch, no second forward: tiny models)",
    )
    max_video_sub_batches: int = _f(1, "at most this many video sub-batches per batch")
    hard_negatives: bool = _f(False, "add the source's hard negatives to the candidates")
    epochs: float = _f(2.0, "passes over the contrastive data")
    max_steps: int | None = _f(None, "stop after this many steps (overrides epochs)")
    learning_rate: float = _f(1e-4, "peak learning rate")
    lr_scheduler: Literal["cosine", "constant", "linear"] = _f("cosine", "schedule after warm-up")
    warmup_steps: int = _f(10, "linear warm-up steps")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    max_length: int = _f(8192, "token limit of one input")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward")
    deepspeed: str | None = _f(None, "DeepSpeed config file (paper: ZeRO-2) or null")
    save_steps: int = _f(100, "checkpoint every this many steps (resume after interruption)")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (0: no clipping)")
    dataloader_workers: int = _f(
        0, "processes that build inputs (images, evidence crops, tokens) ahead of the step"
    )


@dataclass
class SFTConfig:
    enabled: bool = _f(True, "cold-start SFT of the Reasoner (false: RL from the instruct model)")
    data: Literal["contrastive", "annotated"] = _f(
        "contrastive",
        "T-CoTs to imitate: the contrastive split (RL pairs stay unseen when split.rule is "
        "disjoint) or every annotated pair that passed the filter",
    )
    lora: LoraConfig = _f(LoraConfig(), "LoRA of the Reasoner during SFT")
    epochs: float = _f(1.0, "passes over the annotated T-CoTs")
    max_steps: int | None = _f(None, "stop after this many steps (overrides epochs)")
    learning_rate: float = _f(1e-5, "learning rate")
    batch_size: int = _f(8, "examples per device step")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimisation step")
    max_length: int = _f(4096, "token limit of prompt + completion")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward")
    save_steps: int = _f(200, "checkpoint every this many steps (resume after interruption)")


# What the paper and its code release use, for every preset-dependent EG-RL key
# (../shared/docs/method.md, stage 3). The group size G (paper 8, release 4) is set by the
# preset files too, but not checked: small runs use small groups under either preset.
EGRL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "format_weight": 0.05,
        "process_weight": 0.8,
        "outcome_weight": 0.2,
        "format_variant": "tags+evidence",
        "outcome_acc": "all_in_topk",
        "process_value": "one",
        "shuffle_candidates": True,
    },
    "release": {
        "format_weight": 0.05,
        "process_weight": 0.2,
        "outcome_weight": 0.8,
        "format_variant": "tags",
        "outcome_acc": "fraction_half",
        "process_value": "margin",
        "shuffle_candidates": False,
    },
}


@dataclass
class EGRLConfig:
    enabled: bool = _f(True, "run EG-RL (false: the 'without EG-RL' ablation)")
    preset: Literal["paper", "release", "custom"] = _f(
        "paper",
        "reward formulas and weights of the paper or of its code release (method.md); the "
        "preset-dependent keys must then hold that preset's values (config/ablations/"
        "release.yaml sets them all); 'custom' allows any mix",
    )
    num_generations: int = _f(8, "group size G: rollouts per query and per positive")
    format_weight: float = _f(0.05, "a: weight of the format reward")
    process_weight: float = _f(0.8, "b: weight of the process reward (release: 0.2)")
    outcome_weight: float = _f(0.2, "c: weight of the outcome reward (release: 0.8)")
    format_variant: Literal["tags", "tags+evidence"] = _f(
        "tags+evidence", "format check: tags only (release) or tags + evidence key (paper)"
    )
    outcome_acc: Literal["all_in_topk", "fraction_half"] = _f(
        "all_in_topk", "Acc_k: 1 if all positives in top k (paper) or fraction x 0.5 (release)"
    )
    outcome_tau: float = _f(0.5, "temperature of the softmax-weighted negative similarity")
    weighted_negatives: bool = _f(True, "false: plain mean over negatives (ablation)")
    process_value: Literal["one", "margin"] = _f(
        "one", "process reward for a correct pick: 1 (paper) or the margin (release)"
    )
    shuffle_candidates: bool = _f(True, "shuffle the Discriminator's candidates (paper: yes)")
    hard_negatives: int = _f(4, "hardest negatives shown to the Discriminator")
    use_process_reward: bool = _f(True, "false: the 'without process reward' ablation")
    use_outcome_reward: bool = _f(True, "false: the 'without outcome reward' ablation")
    embedder_backend: Literal["local", "server"] = _f(
        "local", "frozen Embedder in-process (local) or an OpenAI-compatible embeddings server"
    )
    embedder_server: ServerConfig = _f(
        ServerConfig(), "the embeddings server (embedder_backend: server; /v1/embeddings)"
    )
    embed_batch_size: int = _f(16, "rollouts per Embedder forward (local backend)")
    discriminator_backend: Literal["local", "server", "oracle"] = _f(
        "local",
        "frozen Discriminator in-process (local), an OpenAI-compatible chat server, or the "
        "rule-based judge of the synthetic world (oracle: data.source synthetic only; "
        "docs/reasoner.md)",
    )
    discriminator_server: ServerConfig = _f(
        ServerConfig(), "the chat server (discriminator_backend: server)"
    )
    discriminator_max_new_tokens: int = _f(8, "token limit of the Discriminator's answer")
    discriminator_batch_size: int = _f(16, "prompts per Discriminator generate call (local)")
    learning_rate: float = _f(3e-6, "constant learning rate")
    beta: float = _f(0.01, "KL coefficient (low-variance KL estimator, not in the reward)")
    epsilon: float = _f(0.2, "PPO clip range")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = _f(
        "dapo", "TRL loss aggregation; dapo = token mean over the batch (verl's token-mean)"
    )
    temperature: float = _f(1.0, "sampling temperature of rollouts")
    max_prompt_length: int = _f(4096, "prompt token limit (vLLM: model length = prompt + rollout)")
    max_completion_length: int = _f(2048, "rollout token limit")
    epochs: float = _f(1.0, "passes over the RL set")
    max_steps: int | None = _f(None, "stop after this many steps (overrides epochs)")
    per_device_batch_size: int = _f(8, "pairs per device step (x G rollouts per side)")
    gradient_accumulation_steps: int = _f(
        1, "micro-batches per optimisation step; rewards see all of them (one dataset)"
    )
    gradient_checkpointing: bool = _f(False, "recompute activations in backward")
    use_vllm: bool = _f(False, "roll out through vLLM (used only where CUDA and vllm exist)")
    vllm_mode: Literal["colocate", "server"] = _f(
        "colocate", "vLLM in the training process, or a `trl vllm-serve` server"
    )
    vllm_server_url: str | None = _f(None, "base URL of the trl vllm-serve server (server mode)")
    save_steps: int = _f(50, "checkpoint every this many steps (the rule resumes from the last)")
    heldout_pairs_per_dataset: int = _f(
        0,
        "RL pairs per dataset kept out of training; the outcome reward of the starting and "
        "the trained Reasoner on them is written to heldout.json (0: none)",
    )
    lora: LoraConfig = _f(LoraConfig(), "LoRA of the Reasoner during EG-RL")


@dataclass
class EvalIndexConfig:
    kind: Literal["exact", "ivf", "hnsw"] = _f(
        "exact", "exact inner product (IndexFlatIP) or an approximate index for large corpora"
    )
    min_corpus: int = _f(100000, "use the approximate kind only for corpora at least this large")
    ivf_nlist: int | None = _f(None, "IVF lists (null: about sqrt(corpus size))")
    ivf_nprobe: int = _f(32, "IVF lists searched per query")
    hnsw_m: int = _f(32, "HNSW links per node")
    hnsw_ef_construction: int = _f(80, "HNSW build-time search depth")
    hnsw_ef_search: int = _f(128, "HNSW query-time search depth")
    gpu: bool = _f(True, "put flat / IVF indexes on the GPUs when faiss has any")


@dataclass
class EvalConfig:
    suites: list[Literal["synth", "mmeb", "uvrb"]] = _f(["synth"], "benchmark suites to run")
    tasks: list[str] | None = _f(None, "restrict to these task names (null: every task)")
    mmeb_root: str | None = _f(
        None,
        "local MMEB-V2 root holding image-tasks/, video-tasks/, visdoc-tasks/ and the image "
        "tasks' annotation parquets under MMEB_Test_Instruct/<task>/ (suite mmeb)",
    )
    uvrb_root: str | None = _f(
        None, "local UVRB root holding one folder per dataset (<name>/jsonl/, videos_frames/)"
    )
    num_frames: int = _f(8, "frames sampled uniformly per video")
    image_min_tokens: int = _f(128, "image pixel budget, lower bound, in 32x32 patches")
    image_max_tokens: int = _f(768, "image pixel budget, upper bound, in 32x32 patches")
    video_min_tokens: int = _f(128, "per-frame pixel budget, lower bound, in 32x32 patches")
    video_max_tokens: int = _f(300, "per-frame pixel budget, upper bound, in 32x32 patches")
    max_new_tokens: int = _f(2048, "T-CoT length limit at evaluation")
    batch_size: int = _f(16, "items per reasoning / encoding batch")
    on_bad_item: Literal["error", "skip"] = _f("error", "malformed row: stop, or skip and count")
    variants: list[
        Literal[
            "main",
            "raw",
            "answer_only",
            "no_evidence",
            "no_egrl",
            "oracle_tcot",
            "oracle_no_evidence",
        ]
    ] = _f(
        ["main"],
        "evaluation variants: main (the run's models and input), raw (no T-CoT), answer_only, "
        "no_evidence (Embedder input only: reuse main's T-CoTs), no_egrl (Reasoner before "
        "EG-RL), oracle_tcot and oracle_no_evidence (diagnostics: ground-truth T-CoTs with "
        "and without evidence, synthetic data only)",
    )
    embedder_stage: Literal["auto", "base", "trained"] = _f(
        "auto", "Embedder to evaluate: auto (the newest stage the workflow has), base, trained"
    )
    reasoner_stage: Literal["auto", "base", "sft", "egrl"] = _f(
        "auto", "Reasoner of the main variant: auto (newest stage available), base, sft, egrl"
    )
    reasoner_backend: Literal["hf", "server"] = _f(
        "hf", "who writes T-CoTs: the local Reasoner (batched generate) or a server (eval.server)"
    )
    server: ServerConfig = _f(
        ServerConfig(),
        "OpenAI-compatible server (vLLM) serving the Reasoner (reasoner_backend: server); "
        "max_new_tokens applies, server.max_tokens is not used here",
    )
    temperature: float = _f(0.0, "T-CoT sampling temperature at evaluation (0: greedy)")
    cache_dir: str | None = _f(
        None, "T-CoT and embedding caches, shared by runs (null: <results_dir>/cache)"
    )
    ks: list[int] = _f([1, 5, 10], "cut-offs k of the metrics (the main metric's k is added)")
    scorer_compatible: bool = _f(
        False, "reproduce VLM2Vec's NDCG defect (graded qrels) to match published numbers"
    )
    index: EvalIndexConfig = _f(EvalIndexConfig(), "faiss index of global ranking")
    leaderboard_runs: list[str] = _f(
        [], "other runs whose eval results (if present) appear beside this run's in the leaderboard"
    )


# --------------------------------------------------------------------------- launching
@dataclass
class SlurmConfig:
    partition: str | None = _f(None, "sbatch --partition (null: the cluster's default)")
    account: str | None = _f(None, "sbatch --account")
    qos: str | None = _f(None, "sbatch --qos")
    constraint: str | None = _f(None, "sbatch --constraint (e.g. a GPU type)")
    additional_parameters: dict[str, str] = _f(
        {}, "further sbatch options, name -> value (submitit slurm_additional_parameters)"
    )
    setup: list[str] = _f([], "shell lines run in the job before the stage (module load ...)")
    poll_interval_s: float = _f(5.0, "seconds between job-state checks")
    max_requeues: int = _f(3, "times a preempted or timed-out job is requeued")


@dataclass
class LaunchConfig:
    launcher: Literal["local", "slurm"] = _f(
        "local", "run GPU stages in-process (local) or submit them through submitit (slurm)"
    )
    slurm: SlurmConfig = _f(SlurmConfig(), "SLURM options (launcher: slurm)")


# --------------------------------------------------------------------------- top level
@dataclass
class Config:
    run: str = _f("default", "run name; results go to <results_dir>/<run>/")
    results_dir: str = _f("results", "root of all artifacts")
    seed: int = _f(0, "global seed")
    models: ModelsConfig = _f(ModelsConfig(), "backbones: tiny builder or local paths")
    pretrain: PretrainConfig = _f(PretrainConfig(), "pretraining of the tiny backbones")
    data: DataConfig = _f(DataConfig(), "training data and synthetic benchmark")
    annotate: AnnotateConfig = _f(AnnotateConfig(), "T-CoT annotation of training pairs")
    filter: FilterConfig = _f(FilterConfig(), "relevance filter of annotated pairs")
    split: SplitConfig = _f(SplitConfig(), "split into contrastive and RL data")
    train_embedder: EmbedderTrainConfig = _f(EmbedderTrainConfig(), "Embedder contrastive training")
    sft: SFTConfig = _f(SFTConfig(), "cold-start SFT of the Reasoner")
    egrl: EGRLConfig = _f(EGRLConfig(), "EG-RL: GRPO of the Reasoner guided by the Embedder")
    eval: EvalConfig = _f(EvalConfig(), "MMEB-V2 / UVRB / synthetic evaluation")
    launch: LaunchConfig = _f(LaunchConfig(), "where GPU stages run: in-process or SLURM")

    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir) / self.run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sections(self, keys: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """The resolved values of the top-level ``keys`` (default: those the files gave).

        A stage reads a config file holding only the sections it depends on (so that editing
        another stage's keys does not rerun it); its manifest records those sections.
        """
        full = self.to_dict()
        keys = keys if keys is not None else getattr(self, "_given_keys", None) or list(full)
        return {k: full[k] for k in keys}


# --------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover


def _from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        k = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{k}: unknown key; allowed keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for name in names & set(data):
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(data[name], hints[name], key)
    obj = cls(**kwargs)
    _check(obj, prefix)
    return obj


def _check(obj: Any, prefix: str) -> None:
    """Value checks beyond types (ranges, paths required by a choice)."""

    def bad(name: str, msg: str) -> ConfigError:
        return ConfigError(f"{prefix + '.' if prefix else ''}{name}: {msg}")

    if isinstance(obj, OracleConfig):
        for n in ("wrong_evidence_rate", "missing_evidence_rate"):
            if not 0.0 <= getattr(obj, n) <= 1.0:
                raise bad(n, f"must lie in [0, 1], got {getattr(obj, n)}")
    if isinstance(obj, BackboneConfig) and obj.source == "path" and not obj.path:
        raise bad("path", "source is 'path' but no local folder is given; set path or use tiny")
    if isinstance(obj, BackboneConfig) and obj.path and looks_like_hub_id(obj.path):
        # existence of real local folders is checked when the models stage runs
        raise bad(
            "path",
            f"{obj.path!r} looks like a hub id; ume never downloads: download the model on a "
            "machine with internet and give its local folder",
        )
    if isinstance(obj, TinyModelConfig):
        if obj.hidden_size % obj.num_heads:
            raise bad("hidden_size", "must be divisible by num_heads")
        if obj.num_heads % obj.num_kv_heads:
            raise bad("num_kv_heads", "must divide num_heads")
        if obj.vision_hidden_size % obj.vision_heads:
            raise bad("vision_hidden_size", "must be divisible by vision_heads")
        if obj.patch_size is not None and obj.patch_size < 2:
            raise bad("patch_size", f"must be at least 2 pixels (or null), got {obj.patch_size}")
        if not 1 <= obj.image_min_tokens <= obj.image_max_tokens:
            raise bad(
                "image_min_tokens",
                f"must lie in [1, image_max_tokens = {obj.image_max_tokens}], "
                f"got {obj.image_min_tokens}",
            )
    if isinstance(obj, EmbedderTrainConfig):
        _check_train_embedder(obj, bad)
    if isinstance(obj, PretrainConfig):
        for n in ("batch_size", "image_size", "doc_size", "num_frames"):
            if getattr(obj, n) < 1:
                raise bad(n, f"must be at least 1, got {getattr(obj, n)}")
        if obj.learning_rate <= 0:
            raise bad("learning_rate", f"must be positive, got {obj.learning_rate}")
        if not obj.phases:
            raise bad("phases", "give at least one phase ({steps, tasks})")
    if isinstance(obj, PretrainPhaseConfig):
        from ume.data.pretraining import TASKS

        if obj.steps < 1:
            raise bad("steps", f"must be at least 1, got {obj.steps}")
        unknown = sorted(set(obj.tasks) - set(TASKS))
        if unknown:
            raise bad("tasks", f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        if any(w < 0 for w in obj.tasks.values()) or not any(w > 0 for w in obj.tasks.values()):
            raise bad("tasks", "weights must be >= 0 and at least one positive")
    if isinstance(obj, SplitConfig) and obj.rl_per_dataset < 0:
        raise bad("rl_per_dataset", f"must be 0 or more, got {obj.rl_per_dataset}")
    if isinstance(obj, SourceDatasetConfig):
        if obj.weight < 0:
            raise bad("weight", f"must be 0 or more, got {obj.weight}")
        if obj.cap is not None and obj.cap < 0:
            raise bad("cap", f"must be 0 or more (or null: no cap), got {obj.cap}")
    if isinstance(obj, RealSourcesConfig) and obj.num_frames < 1:
        raise bad("num_frames", "must be at least 1")
    if isinstance(obj, EvalConfig):
        for kind in ("image", "video"):
            lo, hi = getattr(obj, f"{kind}_min_tokens"), getattr(obj, f"{kind}_max_tokens")
            if lo > hi:
                raise bad(f"{kind}_min_tokens", f"{lo} is above {kind}_max_tokens ({hi})")
        if not obj.suites:
            raise bad("suites", "name at least one suite: synth, mmeb, uvrb")
    for n in ("epochs",):
        if hasattr(obj, n) and isinstance(getattr(obj, n), float) and getattr(obj, n) < 0:
            raise bad(n, f"must be 0 or more, got {getattr(obj, n)}")
    if isinstance(obj, SyntheticConfig):
        for n in ("image_size", "doc_size", "num_frames", "train_pairs_per_dataset"):
            if getattr(obj, n) < 1:
                raise bad(n, "must be at least 1")
        if obj.eval_candidates < 2:
            raise bad("eval_candidates", "must be at least 2 (a positive and a distractor)")
    if isinstance(obj, EvalConfig):
        if not obj.ks or any(k < 1 for k in obj.ks):
            raise bad("ks", f"must be a non-empty list of positive integers, got {obj.ks}")
        for n in ("batch_size", "max_new_tokens", "num_frames"):
            if getattr(obj, n) < 1:
                raise bad(n, "must be at least 1")
        if not obj.variants:
            raise bad("variants", "name at least one variant, e.g. [main]")
    if isinstance(obj, SFTConfig | EGRLConfig):
        for n in ("learning_rate", "gradient_accumulation_steps", "save_steps"):
            if getattr(obj, n) <= 0:
                raise bad(n, f"must be positive, got {getattr(obj, n)}")
    if isinstance(obj, EGRLConfig):
        _check_egrl(obj, bad)
    if isinstance(obj, Config) and not obj.run.replace("-", "").replace("_", "").isalnum():
        raise bad("run", f"{obj.run!r}: use letters, digits, '-' and '_' (it names a folder)")
    if (
        isinstance(obj, Config)
        and obj.egrl.discriminator_backend == "oracle"
        and obj.data.source != "synthetic"
    ):
        raise ConfigError(
            "egrl.discriminator_backend: 'oracle' judges T-CoTs by the synthetic world's "
            f"vocabulary and needs data.source: synthetic (it is {obj.data.source!r}); use "
            "'local' (the Discriminator model) or 'server'"
        )


def _check_train_embedder(t: EmbedderTrainConfig, bad) -> None:
    for n in ("global_batch_size", "sub_batch_size", "gradcache_chunk_size", "save_steps"):
        if getattr(t, n) < 1:
            raise bad(n, f"must be at least 1, got {getattr(t, n)}")
    if t.global_batch_size % t.sub_batch_size:
        raise bad(
            "global_batch_size",
            f"{t.global_batch_size} is not a multiple of sub_batch_size {t.sub_batch_size}",
        )
    if t.temperature <= 0:
        raise bad("temperature", f"must be > 0, got {t.temperature}")
    for n in ("max_video_sub_batches", "dataloader_workers", "max_grad_norm", "warmup_steps"):
        if getattr(t, n) < 0:
            raise bad(n, f"must be >= 0, got {getattr(t, n)}")
    if t.max_steps is not None and t.max_steps < 1:
        raise bad("max_steps", "must be at least 1 or null (run the epochs)")


def _check_egrl(g: EGRLConfig, bad) -> None:
    if g.num_generations < 2:
        raise bad("num_generations", "GRPO needs at least 2 rollouts per group")
    for n in ("per_device_batch_size", "hard_negatives", "max_completion_length"):
        if getattr(g, n) < 1:
            raise bad(n, f"must be at least 1, got {getattr(g, n)}")
    if (g.use_outcome_reward or g.use_process_reward) and g.per_device_batch_size < 2:
        raise bad(
            "per_device_batch_size",
            "the outcome and process rewards compare a pair with the step's other pairs "
            "(in-batch negatives): give at least 2 pairs per device step",
        )
    if g.outcome_tau <= 0:
        raise bad("outcome_tau", f"must be positive, got {g.outcome_tau}")
    if g.heldout_pairs_per_dataset < 0:
        raise bad("heldout_pairs_per_dataset", "must be 0 or more")
    if g.preset in EGRL_PRESETS:
        for key, want in EGRL_PRESETS[g.preset].items():
            if getattr(g, key) != want:
                raise bad(
                    key,
                    f"{getattr(g, key)!r} contradicts egrl.preset {g.preset!r} (which uses "
                    f"{want!r}); layer config/ablations/{g.preset}.yaml to get every value of "
                    "the preset, or set egrl.preset: custom to mix",
                )
    if g.use_vllm and g.vllm_mode == "server" and not g.vllm_server_url:
        raise bad("vllm_server_url", "vllm_mode is 'server' but no server URL is given")


def config_from_dict(data: dict[str, Any]) -> Config:
    return _from_dict(Config, data)


def load_config(*paths: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load and merge YAML files (later ones win), apply overrides, check, return a Config."""
    merged: dict[str, Any] = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys")
        merged = deep_merge(merged, data)
    if overrides:
        merged = deep_merge(merged, overrides)
    try:
        cfg = config_from_dict(merged)
    except ConfigError as e:
        where = ", ".join(str(p) for p in paths) or "config"
        raise ConfigError(f"{where}: {e}") from None
    cfg._given_keys = list(merged)  # not a field: remembers which sections the files held
    return cfg


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


# --------------------------------------------------------------------------- schema
def _schema_of(tp: Any, doc: str | None = None, default: Any = dataclasses.MISSING) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    s: dict[str, Any]
    if origin in (typing.Union, types.UnionType):
        s = {"anyOf": [_schema_of(a) for a in args]}
    elif origin is Literal:
        s = {"enum": list(args)}
    elif dataclasses.is_dataclass(tp):
        s = json_schema(tp)
    elif origin is list:
        s = {"type": "array", "items": _schema_of(args[0])}
    elif origin is dict:
        s = {"type": "object", "additionalProperties": _schema_of(args[1])}
    elif tp is type(None):
        s = {"type": "null"}
    else:
        s = {
            bool: {"type": "boolean"},
            int: {"type": "integer"},
            float: {"type": "number"},
            str: {"type": "string"},
        }.get(tp, {})
    if doc:
        s["description"] = doc
    if default is not dataclasses.MISSING and not dataclasses.is_dataclass(tp):
        s["default"] = default
    return s


def json_schema(cls: type = Config) -> dict[str, Any]:
    """The JSON schema (draft 2020-12 subset) of a config dataclass, with docs and defaults."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if isinstance(default, list):  # a list of sections (pretrain.phases) as mappings
                default = [
                    dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d for d in default
                ]
        else:  # pragma: no cover
            default = dataclasses.MISSING
        props[f.name] = _schema_of(hints[f.name], f.metadata.get("doc"), default)
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if cls is Config:
        out = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ume config",
        } | out
    return out


def schema_text() -> str:
    return json.dumps(json_schema(Config), indent=2, default=str) + "\n"
