"""Typed configuration: one pydantic model per section, loaded from YAML and checked once.

The models are the single source of every default: their defaults ARE the embedded default
(tiny models, synthetic data; ``config/config.yaml`` only names the run). ``config/paper.yaml``
and ``config/ablations/*.yaml`` are overlays holding what differs. Each field states its
description, its range (``ge``/``gt``/``le``/``lt``) and, where the miniature differs, the
paper's value; checks that involve several keys sit in the section's ``_cross_checks`` and
its ``requires`` (keys a choice makes necessary). The JSON schema in
``workflow/schemas/config.schema.json`` is generated from the models (``python -m ume schema``)
for editors and readers; validation is this module's alone.

Every problem becomes one line of a :class:`~ume.errors.ConfigError`:
``<dotted.key>: <what is wrong>, got <value>; <how to fix>``.

>>> cfg = load_config("config/config.yaml")  # doctest: +SKIP
>>> cfg.data.synthetic.image_size            # doctest: +SKIP
64
"""

import difflib
import functools
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ume.errors import ConfigError
from ume.offline import looks_like_hub_id

# --------------------------------------------------------------------------- machinery


class Problems(ValueError):
    """Problems found by a section's checks: (key relative to the section, message).

    A message may hold ``{at}``, replaced by the section's dotted key and a dot, so that it can
    name a sibling key in full (``{at}backend`` -> ``annotate.backend``).
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))
        self.problems = problems


@dataclass(frozen=True)
class Requirement:
    """``key`` (dotted, relative to the section) must be set (not null, not empty) when every
    key of ``when`` holds its value; ``fix`` says how to set it."""

    when: dict[str, Any]
    key: str
    fix: str

    def problems(self, section: BaseModel) -> Iterator[tuple[str, str]]:
        if all(_get(section, k) == v for k, v in self.when.items()):
            value = _get(section, self.key)
            if value is None or value == "" or value == {} or value == []:
                cond = " and ".join(f"{{at}}{k} is {_yaml(v)}" for k, v in self.when.items())
                yield self.key, f"required when {cond}, got {_yaml(value)}; {self.fix}"

    def json_schema(self) -> dict[str, Any]:
        """The requirement as JSON-schema ``if``/``then`` (editors flag a missing key)."""
        conds = [_nested(k, {"const": v}) for k, v in self.when.items()]
        return {
            "if": conds[0] if len(conds) == 1 else {"allOf": conds},
            "then": _nested(self.key, {"not": {"enum": [None, "", {}, []]}}),
        }


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _nested(dotted: str, leaf: dict[str, Any]) -> dict[str, Any]:
    for part in reversed(dotted.split(".")):
        leaf = {"properties": {part: leaf}, "required": [part]}
    return leaf


def _yaml(v: Any) -> str:
    """A value as the user writes it in YAML (true / null / 'server')."""
    if v is True or v is False or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return repr(v)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The leaves of ``a`` that differ from ``b``."""
    out = {}
    for k, v in a.items():
        if isinstance(v, dict) and isinstance(b.get(k), dict) and v and b[k]:
            sub = _diff(v, b[k])
            if sub:
                out[k] = sub
        elif v != b.get(k):
            out[k] = v
    return out


def _section_schema(schema: dict[str, Any], cls: type) -> None:
    reqs = getattr(cls, "requires", ())
    if reqs:
        schema["allOf"] = [r.json_schema() for r in reqs]


class Section(BaseModel):
    """A config section: unknown keys refused, no silent type coercion (an int is accepted
    where a float is asked: YAML writes 1.0 as 1 often enough)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_section_schema)

    #: keys a choice makes necessary (checked after the fields, listed in the JSON schema)
    requires: ClassVar[tuple[Requirement, ...]] = ()

    def __init__(self, **data: Any) -> None:
        # direct construction (tests, benchmarks, defaults) reports like load_config does
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(describe(e, type(self), _home(type(self)))) from None

    # Nested sections validate through pydantic-core, not through __init__: their errors keep
    # their full dotted key and are all reported together.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="before")
    @classmethod
    def _location_defaults(cls, data: Any) -> Any:
        """A sub-section whose defaults differ where it sits (``sft.lora.enabled: false``) keeps
        them when the user gives only some of its keys."""
        if isinstance(data, dict):
            for name, over in _location_overrides(cls).items():
                if isinstance(data.get(name), dict):
                    data = {**data, name: deep_merge(over, data[name])}
        return data

    @model_validator(mode="after")
    def _check(self):
        problems = list(self._cross_checks())
        for r in self.requires:
            problems.extend(r.problems(self))
        if problems:
            raise Problems(problems)
        return self

    def _cross_checks(self) -> Iterator[tuple[str, str]]:
        """(key, message) for every check that involves several keys of the section."""
        return iter(())

    #: keys that moved or went away: old key -> what to do instead (a clearer message than
    #: "unknown key" for a config written for an earlier version)
    moved: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = [(k, cls.moved[k]) for k in data if k in cls.moved]
            if found:
                raise Problems(found)
        return data


@functools.cache
def _location_overrides(cls: type[Section]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, info in cls.model_fields.items():
        sub = info.annotation
        if info.default_factory is not None and isinstance(sub, type) and issubclass(sub, Section):
            diff = _diff(info.default_factory().model_dump(), sub().model_dump())
            if diff:
                out[name] = diff
    return out


def subsection(cls: type[Section], doc: str, **here: Any) -> Any:
    """A sub-section field; ``here``: its defaults at this place where they differ from the
    class's (they survive a user giving only some keys, see ``_location_defaults``)."""
    if not here:
        return Field(default_factory=cls, description=doc)
    default = cls(**here).model_dump(mode="json")
    return Field(
        default_factory=functools.partial(cls, **here),
        description=f"{doc}; defaults here: {', '.join(f'{k}: {_yaml(v)}' for k, v in here.items())}",
        json_schema_extra={"default": default},
    )


# --------------------------------------------------------------------------- models
class TinyModelConfig(Section):
    hidden_size: int = Field(128, ge=8, description="text hidden size (vision out size matches)")
    num_layers: int = Field(4, ge=1, description="decoder layers of the tiny language model")
    num_heads: int = Field(4, ge=1, description="attention heads (head_dim = hidden_size / heads)")
    num_kv_heads: int = Field(2, ge=1, description="key/value heads (grouped-query attention)")
    intermediate_size: int = Field(256, ge=1, description="MLP width of the tiny language model")
    vision_depth: int = Field(4, ge=1, description="vision transformer blocks of the tiny model")
    vision_hidden_size: int = Field(64, ge=8, description="width of the tiny vision transformer")
    vision_heads: int = Field(2, ge=1, description="attention heads of the tiny vision transformer")
    patch_size: int | None = Field(
        16,
        ge=2,
        description="vision patch side in pixels (null: the family's own, Qwen3-VL 16, Qwen2-VL "
        "14); 16 makes a 96-px synthetic scene 3x3 merged tokens, one per grid cell",
    )
    initializer_range: float = Field(
        0.02, gt=0, description="std of the random initial weights (the real configs' value)"
    )
    vocab_size: int = Field(
        1024,
        ge=300,
        description="byte-level BPE vocabulary trained locally, before the special tokens "
        "(the byte alphabet alone has 256 symbols)",
    )
    seed: int = Field(0, ge=0, description="seed of the random init (same seed -> same weights)")

    def _cross_checks(self):
        if self.vision_hidden_size % self.vision_heads:
            yield (
                "vision_heads",
                f"{self.vision_heads} does not divide vision_hidden_size "
                f"({self.vision_hidden_size}); use a divisor of it",
            )
        if self.hidden_size % self.num_heads:
            yield (
                "num_heads",
                f"{self.num_heads} does not divide hidden_size ({self.hidden_size}); choose "
                "num_heads so that hidden_size / num_heads is an even number, 8 or more",
            )
        elif (self.hidden_size // self.num_heads) % 2 or self.hidden_size // self.num_heads < 8:
            yield (
                "num_heads",
                f"head_dim = hidden_size / num_heads = {self.hidden_size // self.num_heads} must "
                "be even and at least 8 (M-RoPE splits head_dim/2 into 3 sections); use fewer "
                "heads or a larger hidden_size",
            )
        if self.num_heads % self.num_kv_heads:
            yield (
                "num_kv_heads",
                f"{self.num_kv_heads} does not divide num_heads ({self.num_heads}); "
                "use a divisor of num_heads",
            )


class BackboneConfig(Section):
    source: Literal["tiny", "path"] = Field(
        "tiny", description="'tiny': build a random-initialised model locally; 'path': load `path`"
    )
    family: Literal["qwen3_vl", "qwen2_vl"] = Field(
        "qwen3_vl", description="architecture class (transformers Qwen3-VL or Qwen2-VL)"
    )
    path: str | None = Field(
        None, description="local folder of a real backbone (source: path); never a hub id"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights dtype (paper: bfloat16 on GPU)"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="attention kernel (paper: flash_attention_2 on GPU, when installed)"
    )

    requires = (
        Requirement(
            {"source": "path"},
            "path",
            "give the model's local folder, or use source: tiny",
        ),
    )

    def _cross_checks(self):
        if self.path and looks_like_hub_id(self.path):
            # existence of real local folders is checked when the models stage runs
            yield (
                "path",
                f"{self.path!r} looks like a hub id; ume never downloads: download the model on "
                "a machine with internet and give its local folder",
            )


class ModelsConfig(Section):
    tiny: TinyModelConfig = subsection(TinyModelConfig, "shape of the tiny models (source: tiny)")
    embedder: BackboneConfig = subsection(
        BackboneConfig, "the Embedder backbone (paper: Qwen3-VL-2B or 4B)"
    )
    reasoner: BackboneConfig = subsection(
        BackboneConfig, "the Reasoner backbone, writes T-CoTs (paper: Qwen3-VL-8B)"
    )
    discriminator: BackboneConfig = subsection(
        BackboneConfig, "frozen Discriminator of the process reward (paper: Qwen3-VL-8B)"
    )
    annotator: BackboneConfig = subsection(
        BackboneConfig,
        "MLLM that annotates training data (annotate.backend: hf); the other family, so that "
        "both are exercised by the embedded default",
        family="qwen2_vl",
    )


# --------------------------------------------------------------------------- pretraining
#: The pretraining tasks of ume/data/pretraining.py (which checks that it builds exactly these).
PRETRAIN_TASKS = ("caption", "ground", "region", "crop", "video", "document", "summary")
PretrainTask = Literal["caption", "ground", "region", "crop", "video", "document", "summary"]


class PretrainPhaseConfig(Section):
    steps: int = Field(100, ge=1, description="optimisation steps of this phase")
    tasks: dict[PretrainTask, typing.Annotated[float, Field(ge=0)]] = Field(
        {"crop": 1.0},
        description="sampling weight of each pretraining task in this phase (caption, ground, "
        "region, crop, video, document, summary: ume/data/pretraining.py)",
    )

    def _cross_checks(self):
        if any(w < 0 for w in self.tasks.values()) or not any(w > 0 for w in self.tasks.values()):
            yield ("tasks", "weights must be >= 0 and at least one positive")


class PretrainConfig(Section):
    """What a real MLLM brings and a tiny random one lacks: a short language-modelling run on
    synthetic scenes (captions, boxes, regions, crops, key frames, summaries), vision tower
    trained, for tiny backbones only (``source: tiny``); real backbones pass through."""

    enabled: bool = Field(
        True, description="pretrain tiny backbones before every other stage (false: random)"
    )
    roles: list[Literal["embedder", "reasoner", "discriminator", "annotator"]] = Field(
        ["embedder", "reasoner", "discriminator"],
        description="roles whose tiny backbone is pretrained (roles of one family share one "
        "run; the Qwen2-VL annotator, used only by annotate.backend: hf, would cost as much "
        "again); real backbones (source: path) are never pretrained",
    )
    seed: int = Field(0, ge=0, description="seed of the pretraining examples and of training")
    phases: list[PretrainPhaseConfig] = Field(
        default_factory=lambda: [
            PretrainPhaseConfig(
                steps=300,
                tasks={
                    "caption": 1.0,
                    "ground": 1.0,
                    "region": 1.0,
                    "crop": 1.0,
                    "video": 0.5,
                    "summary": 1.5,
                },
            )
        ],
        min_length=1,
        description="curriculum: phases run in order, each drawing its batches from its own "
        "task mix (tasks mixed inside every batch)",
    )
    batch_size: int = Field(16, ge=1, description="examples per step")
    learning_rate: float = Field(2e-3, gt=0, description="peak learning rate (AdamW)")
    lr_scheduler: Literal["cosine", "constant", "linear"] = Field(
        "cosine", description="schedule after warm-up, over all phases"
    )
    warmup_steps: int = Field(20, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the gradient norm (0: no clipping)")
    image_size: int = Field(96, ge=1, description="side of the pretraining scenes, pixels")
    doc_size: int = Field(128, ge=1, description="side of the pretraining document pages, pixels")
    num_frames: int = Field(8, ge=1, description="frames per pretraining video")
    probe_examples: int = Field(
        16, ge=0, description="held-out examples per task scored after training (manifest)"
    )

    @property
    def steps(self) -> int:
        return sum(ph.steps for ph in self.phases)


# --------------------------------------------------------------------------- data
class SyntheticConfig(Section):
    seed: int = Field(0, ge=0, description="seed of the generator (same seed -> same bytes)")
    image_size: int = Field(
        96,
        ge=1,
        description="side of the square synthetic images, pixels (3x3 cells of 2x2 patches)",
    )
    doc_size: int = Field(128, ge=1, description="side of the square document pages, pixels")
    num_frames: int = Field(8, ge=1, description="frames per synthetic video")
    shapes_per_image: int = Field(
        3,
        ge=1,
        le=9,
        description="coloured shapes drawn in each image (one per cell of a 3x3 grid)",
    )
    train_pairs_per_dataset: int = Field(
        32, ge=1, description="training pairs written per synthetic training dataset"
    )
    eval_queries: int = Field(
        32, ge=1, description="queries per synthetic benchmark task (one query = 3 points)"
    )
    eval_candidates: int = Field(
        8, ge=2, description="candidates per query of local ranking (a positive and distractors)"
    )
    eval_corpus: int = Field(
        32, ge=2, description="corpus size of global-ranking tasks (visdoc, UVRB)"
    )


class SourceDatasetConfig(Section):
    weight: float = Field(1.0, ge=0, description="sampling weight of the dataset (paper Table 5)")
    cap: int | None = Field(
        None, ge=0, description="at most this many pairs from the dataset (null: no cap)"
    )


class RealSourcesConfig(Section):
    mmeb_train_root: str | None = Field(
        None, description="local copy of TIGER-Lab/MMEB-train (image tasks)"
    )
    mmeb_train_image_root: str | None = Field(
        None, description="folder the MMEB-train image paths are relative to (null: the root)"
    )
    llava_hound_root: str | None = Field(
        None, description="local copy of the LLaVA-Hound video training data"
    )
    vidore_root: str | None = Field(
        None, description="local copy of the ViDoRe training set (colpali train)"
    )
    visrag_root: str | None = Field(None, description="local copy of the VisRAG training sets")
    num_frames: int = Field(
        8, ge=1, description="frames sampled uniformly per training video (keep = eval.num_frames)"
    )
    datasets: dict[str, SourceDatasetConfig] = Field(
        {},
        description="per-dataset weight and cap; datasets not listed are not loaded "
        "(the paper's list: ume/data/paper_sources.yaml)",
    )


class DataConfig(Section):
    source: Literal["synthetic", "real"] = Field(
        "synthetic",
        description="'synthetic': generate the embedded benchmark; 'real': read local copies "
        "(paper: real)",
    )
    on_bad_item: Literal["error", "skip"] = Field(
        "error",
        description="a corrupt image / missing frames / malformed row: stop, or skip and count "
        "it (paper scale: skip)",
    )
    synthetic: SyntheticConfig = subsection(SyntheticConfig, "the synthetic benchmark generator")
    real: RealSourcesConfig = subsection(RealSourcesConfig, "the paper's training sources")

    requires = (
        Requirement(
            {"source": "real"},
            "real.datasets",
            "list the datasets to load (name: {weight, cap}), e.g. from "
            "ume/data/paper_sources.yaml, or use source: synthetic",
        ),
    )


# --------------------------------------------------------------------------- annotation
class OracleConfig(Section):
    wrong_evidence_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="fraction of T-CoTs whose evidence is wrong (box on another object, "
        "wrong frames)",
    )
    missing_evidence_rate: float = Field(
        0.05, ge=0, le=1, description="fraction of T-CoTs written without evidence"
    )
    seed: int = Field(0, ge=0, description="seed of the oracle's error draws")


class HFAnnotatorConfig(Section):
    batch_size: int = Field(4, ge=1, description="prompts per generate call (left padding)")
    max_new_tokens: int = Field(
        96, ge=1, description="T-CoT length limit in tokens (compact T-CoTs: p95 ~67 tiny tokens)"
    )
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")


class ServerConfig(Section):
    url: str | None = Field(
        None, description="base URL of an OpenAI-compatible server, e.g. http://host:8000/v1"
    )
    model: str | None = Field(None, description="model name the server serves")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable holding the API key (if any)"
    )
    timeout_s: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, description="retries per request on connection errors")
    max_tokens: int = Field(1024, ge=1, description="T-CoT length limit in tokens")
    concurrency: int = Field(8, ge=1, description="requests in flight at once")


URL_FIX = "give the base URL of the OpenAI-compatible server, e.g. http://host:8000/v1"
MODEL_FIX = "name the model the server serves"


class AnnotateConfig(Section):
    backend: Literal["oracle", "hf", "server"] = Field(
        "oracle",
        description="who writes T-CoTs: ground truth (synthetic data), a local MLLM "
        "(models.annotator), or a server (paper: a large MLLM behind a server)",
    )
    oracle: OracleConfig = subsection(OracleConfig, "the ground-truth annotator for synthetic data")
    hf: HFAnnotatorConfig = subsection(
        HFAnnotatorConfig, "local transformers MLLM (models.annotator)"
    )
    server: ServerConfig = subsection(ServerConfig, "OpenAI-compatible chat server")

    requires = (
        Requirement({"backend": "server"}, "server.url", URL_FIX),
        Requirement({"backend": "server"}, "server.model", MODEL_FIX),
    )


class FilterConfig(Section):
    enabled: bool = Field(
        True, description="run the relevance filter (keep pairs judged 'No' = not conflicting)"
    )
    backend: Literal["same", "oracle", "hf", "server"] = Field(
        "same",
        description="judge backend; 'same' uses annotate.backend (Config.filter_backend resolves "
        "it); 'server' uses annotate.server",
    )


class SplitConfig(Section):
    rl_rule: Literal["equidistant", "hard_examples", "ratio"] = Field(
        "equidistant",
        description="how the RL pairs are drawn, per RL dataset (the paper states three rules, "
        "method.md stage 1): 'equidistant' (App. C.3) every k-th kept pair, as many as the "
        "dataset's count; 'hard_examples' (Sec. 3.2) a uniform draw of hard_fraction of the "
        "pairs the relevance filter dropped, at most the dataset's count; 'ratio' (Fig. 2) a "
        "uniform draw of rl_fraction of the kept pairs (80/20), at most the count if rl_counts "
        "names it (paper preset: equidistant, the only rule that gives Table 6's counts)",
    )
    rule: Literal["disjoint", "overlap"] = Field(
        "disjoint",
        description="'disjoint': RL pairs are held out of the contrastive set; "
        "'overlap': RL pairs drawn from the kept pairs stay in it (rl_rule equidistant only: "
        "hard examples never enter it, and ratio is a split)",
    )
    rl_per_dataset: int = Field(
        8,
        ge=0,
        description="RL pairs drawn per RL dataset not named in rl_counts (paper: 1k-2k, Table 6)",
    )
    rl_counts: dict[str, typing.Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="RL pairs per dataset, overriding rl_per_dataset; when given, its datasets "
        "are the RL datasets (paper: 13 datasets, 19,000 pairs, Table 6)",
    )
    rl_datasets: list[str] | None = Field(
        None, description="datasets of the RL set (null: rl_counts' datasets, else every dataset)"
    )
    hard_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="rl_rule hard_examples: fraction of a dataset's dropped pairs drawn (paper: "
        "about 20%)",
    )
    rl_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="rl_rule ratio: fraction of a dataset's kept pairs that go to RL (paper: 20%)",
    )
    exclude_from_contrastive: list[str] = Field(
        ["synth_img_fewcls"],
        description="datasets kept out of contrastive training: few classes give false "
        "negatives in same-dataset batches (paper: HatefulMemes, N24News, VOC2007)",
    )
    seed: int = Field(0, ge=0, description="seed of the split")

    def _cross_checks(self):
        if self.rule == "overlap" and self.rl_rule != "equidistant":
            yield (
                "rule",
                f"'overlap' keeps RL pairs drawn from the kept pairs in the contrastive set, but "
                f"rl_rule {self.rl_rule!r} "
                + (
                    "draws them from the dropped pairs, which never enter it"
                    if self.rl_rule == "hard_examples"
                    else "is a split of the kept pairs"
                )
                + "; use rule: disjoint, or rl_rule: equidistant",
            )
        counts, named = self.rl_counts, self.rl_datasets
        if counts is not None and named is not None and sorted(counts) != sorted(named):
            yield (
                "rl_datasets",
                f"{named} differs from the datasets of rl_counts ({sorted(counts)}); leave "
                "rl_datasets out (null) when rl_counts names the RL datasets",
            )


# --------------------------------------------------------------------------- training stages
class LoraConfig(Section):
    enabled: bool = Field(True, description="train LoRA adapters (false: full fine-tuning)")
    r: int = Field(8, ge=1, description="LoRA rank (paper: 64 for 2B, 96 for 4B)")
    alpha: int = Field(16, gt=0, description="LoRA alpha (paper: 128 for 2B, 192 for 4B)")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="language-model linear layers that get adapters (vision tower stays frozen)",
    )


class EmbedderTrainConfig(Section):
    tcot_input: Literal["full", "answer_only", "no_evidence", "raw"] = Field(
        "full",
        description="Embedder input: T-CoT + evidence, answer only, T-CoT without evidence, "
        "raw input",
    )
    lora: LoraConfig = subsection(LoraConfig, "LoRA of the Embedder")
    temperature: float = Field(
        0.05,
        gt=0,
        description="InfoNCE temperature (paper: 0.02; the tiny Embedder collapsed at it)",
    )
    global_batch_size: int = Field(
        32, ge=1, description="pairs per optimisation step (paper: 512 for 2B, 256 for 4B)"
    )
    sub_batch_size: int = Field(
        16, ge=1, description="pairs per single-dataset sub-batch (paper: 64)"
    )
    gradcache_chunk_size: int = Field(
        16,
        ge=1,
        description="pairs per forward/backward chunk (paper: 16); a chunk never spans two "
        "sub-batches, so short inputs are not padded to a video's length",
    )
    gradcache: bool = Field(
        False,
        description="gradient caching (memory of one chunk, a second forward per chunk; "
        "paper: on); false: every chunk keeps its graph (memory of the whole batch, no second "
        "forward: tiny models)",
    )
    max_video_sub_batches: int = Field(
        1, ge=0, description="at most this many video sub-batches per batch"
    )
    hard_negatives: bool = Field(False, description="add the source's hard negatives")
    epochs: float = Field(1.0, gt=0, description="passes over the contrastive data (paper: 2)")
    max_steps: int | None = Field(
        100,
        ge=1,
        description="stop after this many steps, overriding epochs (null: run the epochs, "
        "as the paper does)",
    )
    learning_rate: float = Field(
        2e-3,
        gt=0,
        description="peak learning rate (paper: 1e-4; LoRA on a tiny model: 5e-3 collapsed "
        "every embedding)",
    )
    lr_scheduler: Literal["cosine", "constant", "linear"] = Field(
        "cosine", description="schedule after warm-up"
    )
    warmup_steps: int = Field(10, ge=0, description="linear warm-up steps (paper: 10)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_length: int = Field(512, ge=1, description="token limit of one input (paper: 8192)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward (paper: on)"
    )
    deepspeed: str | None = Field(
        None, description="DeepSpeed config file or null (paper: workflow/deepspeed/zero2.json)"
    )
    save_steps: int = Field(
        10, ge=1, description="checkpoint every this many steps, to resume after interruption"
    )
    max_grad_norm: float = Field(1.0, ge=0, description="clip the gradient norm (0: no clipping)")
    dataloader_workers: int = Field(
        0,
        ge=0,
        description="processes that build inputs (images, evidence crops, tokens) ahead of the "
        "step (0: in the training process)",
    )

    def _cross_checks(self):
        if self.global_batch_size % self.sub_batch_size:
            yield (
                "global_batch_size",
                f"{self.global_batch_size} is not a multiple of sub_batch_size "
                f"({self.sub_batch_size}); make it one",
            )


def deepspeed_key(trl_config: str, paper: str) -> Any:
    """A stage's DeepSpeed config file (ZeRO-2/3 JSON with the HF Trainer's "auto" values)."""
    return Field(
        None,
        description=f"DeepSpeed config file passed to TRL's {trl_config}(deepspeed=...), or null "
        f"(one process per GPU: launch.launcher slurm, or accelerate launch); {paper}; ZeRO-2 "
        "only: the stage merges LoRA into whole weights on rank 0, which ZeRO-3 partitions",
    )


class SFTConfig(Section):
    enabled: bool = Field(
        True, description="cold-start SFT of the Reasoner (false: RL from the instruct model)"
    )
    data: Literal["contrastive", "annotated"] = Field(
        "contrastive",
        description="T-CoTs to imitate: the contrastive split (RL pairs stay unseen when "
        "split.rule is disjoint) or every annotated pair that passed the filter",
    )
    lora: LoraConfig = subsection(
        LoraConfig,
        "LoRA of the Reasoner during SFT (tiny random models learn the T-CoT form faster fully "
        "fine-tuned; paper: LoRA r 64, alpha 128)",
        enabled=False,
    )
    epochs: float = Field(1.0, gt=0, description="passes over the annotated T-CoTs")
    max_steps: int | None = Field(
        150,
        ge=1,
        description="stop after this many steps, overriding epochs (null: run the epochs); "
        "the embedded default's held-out format rate needs ~150 (docs/reasoner.md)",
    )
    learning_rate: float = Field(5e-3, gt=0, description="learning rate (paper: 1e-5)")
    batch_size: int = Field(8, ge=1, description="examples per device step (paper: 8)")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per step")
    max_length: int = Field(
        1024, ge=1, description="token limit of prompt + completion (paper: 4096)"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward")
    deepspeed: str | None = deepspeed_key("SFTConfig", "paper: workflow/deepspeed/zero2.json")
    save_steps: int = Field(
        200, ge=1, description="checkpoint every this many steps, to resume after interruption"
    )


# What the paper and its code release use, for every preset-dependent EG-RL key
# (../shared/docs/method.md, stage 3): the one place these values are written. The group size
# G (paper 8, release 4) is not part of a preset: small runs use small groups under either.
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


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def preset_key(key: str, doc: str, **bounds: Any) -> Any:
    """A preset-dependent EG-RL key: its default is egrl.preset's value (``EGRLConfig`` fills
    it in before the fields are checked)."""
    values = ", ".join(f"{p} {_yaml(v[key])}" for p, v in EGRL_PRESETS.items())
    return Field(
        None,
        description=f"{doc}; default: egrl.preset's value ({values}; custom: paper)",
        json_schema_extra=_drop_default,
        **bounds,
    )


class EGRLConfig(Section):
    enabled: bool = Field(True, description="run EG-RL (false: the 'without EG-RL' ablation)")
    preset: Literal["paper", "release", "custom"] = Field(
        "paper",
        description="reward formulas and weights of the paper or of its code release "
        "(method.md), applied as a layer: the preset-dependent keys (format_weight, "
        "process_weight, outcome_weight, format_variant, outcome_acc, process_value, "
        "shuffle_candidates) take its values, and giving one of them another value is an "
        "error; 'custom' starts from the paper's values and allows any mix",
    )
    num_generations: int = Field(
        4, ge=2, description="group size G: rollouts per query and per positive (paper: 8)"
    )
    format_weight: float = preset_key("format_weight", "a: weight of the format reward", ge=0)
    process_weight: float = preset_key("process_weight", "b: weight of the process reward", ge=0)
    outcome_weight: float = preset_key("outcome_weight", "c: weight of the outcome reward", ge=0)
    format_variant: Literal["tags", "tags+evidence"] = preset_key(
        "format_variant", "format check: tags only, or tags + the evidence key"
    )
    outcome_acc: Literal["all_in_topk", "fraction_half"] = preset_key(
        "outcome_acc", "Acc_k: 1 if all positives are in the top k, or their fraction x 0.5"
    )
    outcome_tau: float = Field(
        0.5, gt=0, description="temperature of the softmax-weighted negative similarity"
    )
    weighted_negatives: bool = Field(True, description="false: plain mean over negatives")
    process_value: Literal["one", "margin"] = preset_key(
        "process_value", "process reward for a correct pick: 1, or the similarity margin"
    )
    shuffle_candidates: bool = preset_key(
        "shuffle_candidates", "shuffle the Discriminator's candidates"
    )
    hard_negatives: int = Field(4, ge=1, description="hardest negatives shown to the Discriminator")
    use_process_reward: bool = Field(True, description="false: 'without process reward' ablation")
    use_outcome_reward: bool = Field(True, description="false: 'without outcome reward' ablation")
    embedder_backend: Literal["local", "server"] = Field(
        "local",
        description="frozen Embedder in-process (local) or an OpenAI-compatible embeddings "
        "server (the release serves it by URL)",
    )
    embedder_server: ServerConfig = subsection(
        ServerConfig,
        "the embeddings server (embedder_backend: server; /v1/embeddings; max_tokens unused)",
    )
    embed_batch_size: int = Field(16, ge=1, description="rollouts per Embedder forward (local)")
    discriminator_backend: Literal["local", "server", "oracle"] = Field(
        "oracle",
        description="frozen Discriminator in-process (local; paper scale), an OpenAI-compatible "
        "chat server, or the rule-based judge of the synthetic world (oracle: data.source "
        "synthetic only, the embedded default: a tiny model cannot judge; docs/reasoner.md)",
    )
    discriminator_server: ServerConfig = subsection(
        ServerConfig,
        "the chat server (discriminator_backend: server; discriminator_max_new_tokens applies, "
        "max_tokens is unused)",
    )
    discriminator_max_new_tokens: int = Field(
        8, ge=1, description="token limit of the Discriminator's answer (release: 10)"
    )
    discriminator_batch_size: int = Field(
        16, ge=1, description="prompts per Discriminator generate call (local)"
    )
    learning_rate: float = Field(
        1e-4,
        gt=0,
        description="constant learning rate (paper: 3e-6 with LoRA; tiny models, fully "
        "fine-tuned, need more)",
    )
    beta: float = Field(
        0.01, ge=0, description="KL coefficient (low-variance KL estimator, not in the reward)"
    )
    epsilon: float = Field(0.2, gt=0, description="PPO clip range")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "dapo",
        description="TRL loss aggregation; dapo = token mean over the batch (verl's token-mean)",
    )
    temperature: float = Field(
        1.0,
        gt=0,
        description="sampling temperature of rollouts (paper: 1.0; after SFT the tiny Reasoner "
        "samples varied, readable T-CoTs at it)",
    )
    max_prompt_length: int = Field(
        1024,
        ge=1,
        description="prompt token limit, images included; vLLM model length = prompt + rollout "
        "(paper scale: 8192)",
    )
    max_completion_length: int = Field(
        80,
        ge=1,
        description="rollout token limit (paper: 2048); checked against the annotated T-CoT "
        "lengths (annotate/tcot_lengths.json)",
    )
    epochs: float = Field(1.0, gt=0, description="passes over the RL set")
    max_steps: int | None = Field(
        20, ge=1, description="stop after this many steps, overriding epochs (null: run the epochs)"
    )
    pairs_per_device: int = Field(
        5,
        ge=1,
        description="pairs each process rolls out per optimisation step: one generation batch of "
        "2 x G x pairs_per_device rollouts, all of one dataset, that the rewards see at once "
        "(in-batch negatives are the step's other pairs; paper: 8)",
    )
    micro_batch_groups: int = Field(
        1,
        ge=1,
        description="prompt groups (G rollouts each) per forward/backward pass: TRL's "
        "per_device_train_batch_size = micro_batch_groups x G; gradient accumulation covers "
        "the rest of the generation batch (2 x pairs_per_device / micro_batch_groups steps); "
        "must divide 2 x pairs_per_device",
    )
    deepspeed: str | None = deepspeed_key("GRPOConfig", "paper: workflow/deepspeed/zero2.json")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward (paper scale: on)"
    )
    use_vllm: bool = Field(
        False,
        description="roll out through vLLM, used only where CUDA and vllm exist (paper scale: on)",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="vLLM in the training process, or a `trl vllm-serve` server"
    )
    vllm_server_url: str | None = Field(
        None, description="base URL of the trl vllm-serve server (vllm_mode: server)"
    )
    save_steps: int = Field(
        50, ge=1, description="checkpoint every this many steps (the rule resumes from the last)"
    )
    heldout_pairs_per_dataset: int = Field(
        2,
        ge=0,
        description="RL pairs per dataset kept out of training; the outcome reward of the "
        "starting and the trained Reasoner on them is written to heldout.json (0: none, as at "
        "paper scale)",
    )
    lora: LoraConfig = subsection(
        LoraConfig,
        "LoRA of the Reasoner during EG-RL (tiny models: full fine-tuning, LoRA's per-layer cost "
        "doubles a step; paper: LoRA r 64, alpha 128)",
        enabled=False,
    )

    requires = (
        Requirement({"embedder_backend": "server"}, "embedder_server.url", URL_FIX),
        Requirement(
            {"embedder_backend": "server"},
            "embedder_server.model",
            MODEL_FIX,
        ),
        Requirement(
            {"discriminator_backend": "server"},
            "discriminator_server.url",
            URL_FIX,
        ),
        Requirement(
            {"discriminator_backend": "server"},
            "discriminator_server.model",
            MODEL_FIX,
        ),
        Requirement(
            {"use_vllm": True, "vllm_mode": "server"},
            "vllm_server_url",
            "give the base URL of the `trl vllm-serve` server, or use vllm_mode: colocate",
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """The preset as a layer under the given keys (contradictions: ``_cross_checks``)."""
        if isinstance(data, dict):
            preset = data.get("preset", "paper")
            data = {**EGRL_PRESETS.get(preset, EGRL_PRESETS["paper"]), **data}
        return data

    def _cross_checks(self):
        for key, want in EGRL_PRESETS.get(self.preset, {}).items():
            if getattr(self, key) != want:
                yield (
                    key,
                    f"{_yaml(getattr(self, key))} contradicts egrl.preset {self.preset!r} (which "
                    f"uses {_yaml(want)}); leave the key out to take the preset's value, or set "
                    "egrl.preset: custom to mix",
                )
        if (self.use_outcome_reward or self.use_process_reward) and self.pairs_per_device < 2:
            yield (
                "pairs_per_device",
                "the outcome and process rewards compare a pair with the step's other pairs "
                "(in-batch negatives): give at least 2 pairs per device step, got "
                f"{self.pairs_per_device}",
            )
        if (2 * self.pairs_per_device) % self.micro_batch_groups:
            yield (
                "micro_batch_groups",
                f"{self.micro_batch_groups} does not divide the {2 * self.pairs_per_device} "
                f"prompt groups of a generation batch (2 sides x pairs_per_device "
                f"{self.pairs_per_device}); use a divisor of it (1 is always one)",
            )

    moved = {
        "per_device_batch_size": "renamed pairs_per_device (pairs per process per optimisation "
        "step; TRL's per-device batch is micro_batch_groups x G rollouts)",
        "gradient_accumulation_steps": "no longer set by hand: it is 2 x pairs_per_device / "
        "micro_batch_groups, so that one optimisation step covers one generation batch of whole "
        "pairs; remove the key (set pairs_per_device and micro_batch_groups)",
    }


class EvalIndexConfig(Section):
    kind: Literal["exact", "ivf", "hnsw"] = Field(
        "exact",
        description="exact inner product (IndexFlatIP) or an approximate index for large corpora",
    )
    min_corpus: int = Field(
        100000, ge=1, description="use the approximate kind only for corpora at least this large"
    )
    ivf_nlist: int | None = Field(
        None, ge=1, description="IVF lists (null: about sqrt(corpus size))"
    )
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists searched per query")
    hnsw_m: int = Field(32, ge=2, description="HNSW links per node")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build-time search depth")
    hnsw_ef_search: int = Field(128, ge=1, description="HNSW query-time search depth")
    gpu: bool = Field(True, description="put flat / IVF indexes on the GPUs when faiss has any")


class EvalConfig(Section):
    suites: list[Literal["synth", "mmeb", "uvrb"]] = Field(
        ["synth"], min_length=1, description="benchmark suites to run (paper: mmeb, uvrb)"
    )
    tasks: list[str] | None = Field(
        None, description="restrict to these task names (null: every task)"
    )
    mmeb_root: str | None = Field(
        None,
        description="local MMEB-V2 root as VLM2Vec's download_data.sh makes it (a clone of "
        "TIGER-Lab/MMEB-V2): image-tasks/, video-tasks/, visdoc-tasks/ (suite mmeb; "
        "`python -m ume check-data` says what is missing; missing data is recorded missing)",
    )
    mmeb_image_annotations: str | None = Field(
        None,
        description="folder of the image tasks' annotation parquets, <folder>/<task>/"
        "test-*.parquet (a snapshot of ziyjiang/MMEB_Test_Instruct; null: "
        "<mmeb_root>/image-tasks, beside the images)",
    )
    mmeb_image_root: str | None = Field(
        None,
        description="folder the image tasks' image paths are relative to (mmeb_v1.tar.gz "
        "unpacked; null: <mmeb_root>/image-tasks)",
    )
    uvrb_root: str | None = Field(
        None,
        description="local UVRB root holding one folder per dataset (<name>/jsonl/, "
        "videos_frames/)",
    )
    num_frames: int = Field(8, ge=1, description="frames sampled uniformly per video")
    max_new_tokens: int = Field(
        80,
        ge=1,
        description="T-CoT length limit (paper: 2048); checked against the annotated T-CoT "
        "lengths when a variant generates T-CoTs",
    )
    batch_size: int = Field(
        64, ge=1, description="items per reasoning / encoding batch (paper: 64)"
    )
    on_bad_item: Literal["error", "skip"] = Field(
        "error", description="malformed benchmark row: stop, or skip and count"
    )
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
    ] = Field(
        [
            "main",
            "raw",
            "answer_only",
            "no_evidence",
            "no_egrl",
            "oracle_tcot",
            "oracle_no_evidence",
        ],
        min_length=1,
        description="evaluation variants: main (the run's models and input), raw (no T-CoT), "
        "answer_only, no_evidence (Embedder input only: reuse main's T-CoTs), no_egrl "
        "(Reasoner before EG-RL), oracle_tcot and oracle_no_evidence (diagnostics: "
        "ground-truth T-CoTs with and without evidence, synthetic data only)",
    )
    embedder_stage: Literal["auto", "base", "trained"] = Field(
        "auto",
        description="Embedder to evaluate: auto (the newest stage the workflow has), base, trained",
    )
    reasoner_stage: Literal["auto", "base", "sft", "egrl"] = Field(
        "auto",
        description="Reasoner of the main variant: auto (newest stage available), base, sft, egrl",
    )
    reasoner_backend: Literal["hf", "server"] = Field(
        "hf",
        description="who writes T-CoTs: the local Reasoner (batched generate) or a server "
        "(eval.server)",
    )
    server: ServerConfig = subsection(
        ServerConfig,
        "OpenAI-compatible server (vLLM) serving the Reasoner (reasoner_backend: server); its "
        "model name is the cache identity (one name per weights); max_new_tokens applies, "
        "server.max_tokens is not used here",
    )
    temperature: float = Field(
        0.0, ge=0, description="T-CoT sampling temperature at evaluation (0: greedy)"
    )
    cache_dir: str | None = Field(
        None,
        description="T-CoT and embedding caches, shared by runs (null: <results_dir>/cache; "
        "Config.eval_cache_dir resolves it)",
    )
    ks: list[typing.Annotated[int, Field(ge=1)]] = Field(
        [1, 5, 10],
        min_length=1,
        description="cut-offs k of the metrics (the main metric's k is added)",
    )
    scorer_compatible: bool = Field(
        False, description="reproduce VLM2Vec's NDCG defect (graded qrels) to match its numbers"
    )
    index: EvalIndexConfig = subsection(EvalIndexConfig, "faiss index of global ranking")
    leaderboard_runs: list[str] = Field(
        [],
        description="other runs whose eval results (if present) appear beside this run's in the "
        "leaderboard",
    )

    requires = (
        Requirement({"reasoner_backend": "server"}, "server.url", URL_FIX),
        Requirement({"reasoner_backend": "server"}, "server.model", MODEL_FIX),
    )

    moved = {
        k: f"moved to budgets.{k} (one pixel budget for every role, at training, RL and "
        "evaluation alike)"
        for k in ("image_min_tokens", "image_max_tokens", "video_min_tokens", "video_max_tokens")
    }


# --------------------------------------------------------------------------- pixel budgets
_TOKEN = "one token = (patch x merge)^2 pixels: 32x32 for Qwen3-VL, 28x28 for Qwen2-VL"


class BudgetsConfig(Section):
    """How many visual tokens an image or a video frame becomes, for every role's processor
    (Embedder, Reasoner, Discriminator, annotator) at training, RL and evaluation alike: one
    setting, so that the Embedder and the Reasoner see at evaluation the resolution they were
    trained on."""

    image_min_tokens: int = Field(
        4,
        ge=1,
        description=f"visual tokens of an image, a document page or an evidence crop: lower "
        f"bound ({_TOKEN}; paper: 128)",
    )
    image_max_tokens: int = Field(
        16, ge=1, description=f"visual tokens of an image: upper bound ({_TOKEN}; paper: 768)"
    )
    video_min_tokens: int = Field(
        4,
        ge=1,
        description=f"visual tokens of one video frame or key frame: lower bound ({_TOKEN}; "
        "paper: 128)",
    )
    video_max_tokens: int = Field(
        16,
        ge=1,
        description=f"visual tokens of one video frame or key frame: upper bound ({_TOKEN}; "
        "paper: 300)",
    )

    def _cross_checks(self):
        for kind in ("image", "video"):
            lo, hi = getattr(self, f"{kind}_min_tokens"), getattr(self, f"{kind}_max_tokens")
            if lo > hi:
                yield (
                    f"{kind}_min_tokens",
                    f"{lo} is above {kind}_max_tokens ({hi}); lower it or raise the maximum",
                )


# --------------------------------------------------------------------------- launching
class SlurmConfig(Section):
    partition: str | None = Field(None, description="sbatch --partition (null: the default)")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    constraint: str | None = Field(None, description="sbatch --constraint (e.g. a GPU type)")
    additional_parameters: dict[str, str] = Field(
        {},
        description="further sbatch options, name -> value (submitit slurm_additional_parameters)",
    )
    setup: list[str] = Field(
        [], description="shell lines run in the job before the stage (module load ...)"
    )
    poll_interval_s: float = Field(5.0, gt=0, description="seconds between job-state checks")
    max_requeues: int = Field(3, ge=0, description="times a preempted or timed-out job is requeued")


class LaunchConfig(Section):
    launcher: Literal["local", "slurm"] = Field(
        "local",
        description="run GPU stages in-process (local) or submit them through submitit (slurm)",
    )
    slurm: SlurmConfig = subsection(SlurmConfig, "SLURM options (launcher: slurm)")


# --------------------------------------------------------------------------- top level
class Config(Section):
    run: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="run name: results go to <results_dir>/<run>/, so letters, digits, '-' "
        "and '_' only",
    )
    results_dir: str = Field("results", min_length=1, description="root of all artifacts")
    seed: int = Field(0, ge=0, description="global seed (paper preset: 42)")
    models: ModelsConfig = subsection(ModelsConfig, "backbones: tiny builder or local paths")
    pretrain: PretrainConfig = subsection(
        PretrainConfig, "pretraining of the tiny backbones (real backbones pass through)"
    )
    data: DataConfig = subsection(DataConfig, "training data and synthetic benchmark")
    annotate: AnnotateConfig = subsection(AnnotateConfig, "T-CoT annotation of training pairs")
    filter: FilterConfig = subsection(FilterConfig, "relevance filter of annotated pairs")
    split: SplitConfig = subsection(SplitConfig, "split into contrastive and RL data")
    train_embedder: EmbedderTrainConfig = subsection(
        EmbedderTrainConfig, "Embedder contrastive training"
    )
    sft: SFTConfig = subsection(SFTConfig, "cold-start SFT of the Reasoner")
    egrl: EGRLConfig = subsection(EGRLConfig, "EG-RL: GRPO of the Reasoner guided by the Embedder")
    eval: EvalConfig = subsection(EvalConfig, "MMEB-V2 / UVRB / synthetic evaluation")
    budgets: BudgetsConfig = subsection(
        BudgetsConfig, "visual tokens per image and per video frame, for every role"
    )
    launch: LaunchConfig = subsection(LaunchConfig, "where GPU stages run: in-process or SLURM")

    # the filter judges through annotate.server when its backend is 'server'
    requires = (
        Requirement({"filter.backend": "server"}, "annotate.server.url", URL_FIX),
        Requirement(
            {"filter.backend": "server"},
            "annotate.server.model",
            MODEL_FIX,
        ),
    )

    def _cross_checks(self):
        if self.egrl.discriminator_backend == "oracle" and self.data.source != "synthetic":
            yield (
                "egrl.discriminator_backend",
                "'oracle' judges T-CoTs by the synthetic world's vocabulary and needs "
                f"data.source: synthetic (it is {self.data.source!r}); use 'local' (the "
                "Discriminator model) or 'server'",
            )

    # top-level keys the files gave when they are a stage's slice (see sections())
    _given_keys: list[str] | None = PrivateAttr(None)

    def __eq__(self, other: object) -> bool:
        # the files a config came from are not part of its value
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir) / self.run

    @property
    def eval_cache_dir(self) -> str:
        """eval.cache_dir, or <results_dir>/cache when it is null (shared by runs)."""
        return self.eval.cache_dir or str(Path(self.results_dir) / "cache")

    @property
    def filter_backend(self) -> Literal["oracle", "hf", "server"]:
        """The filter's judge: filter.backend, with 'same' meaning annotate.backend."""
        return self.annotate.backend if self.filter.backend == "same" else self.filter.backend

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def sections(self, keys: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """The resolved values of the top-level ``keys`` (default: see below).

        A stage reads a config file holding only the sections it depends on (its slice, so
        that editing another stage's keys does not rerun it); its manifest records those
        sections. Without ``keys``: the sections of that slice, or every section when the
        config is a run's (its files name the run, as config/config.yaml does).
        """
        full = self.to_dict()
        keys = keys if keys is not None else self._given_keys or list(full)
        return {k: full[k] for k in keys}


# --------------------------------------------------------------------------- errors
_TYPE_WORDS = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}


def _unwrap(ann: Any) -> tuple[Any, bool]:
    """(the annotation without ``| None`` and ``Annotated``, whether null is allowed)."""
    nullable = False
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(ann))
        ann = args[0] if len(args) == 1 else ann
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann, nullable


def _walk(root: type, loc: tuple) -> tuple[Any, Any]:
    """(annotation at ``loc``, FieldInfo when ``loc`` ends on a field) under the model ``root``."""
    ann, info = root, None
    for part in loc:
        ann, _ = _unwrap(ann)
        origin = typing.get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel) and part in ann.model_fields:
            info = ann.model_fields[part]
            ann = info.annotation
        elif origin is list and isinstance(part, int):
            ann, info = typing.get_args(ann)[0], None
        elif origin is dict:
            ann, info = typing.get_args(ann)[1], None
        else:
            return None, None
    return ann, info


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_text(bounds: dict[str, Any], nullable: bool = False) -> str:
    """'must lie in [0, 1)' / 'must be at least 1' / 'must be 0 or more' / ..."""
    lo_key = "ge" if "ge" in bounds else "gt" if "gt" in bounds else None
    hi_key = "le" if "le" in bounds else "lt" if "lt" in bounds else None
    if lo_key and hi_key:
        text = (
            f"must lie in {'[' if lo_key == 'ge' else '('}{_num(bounds[lo_key])}, "
            f"{_num(bounds[hi_key])}{']' if hi_key == 'le' else ')'}"
        )
    elif lo_key == "ge":
        text = (
            "must be 0 or more" if bounds["ge"] == 0 else f"must be at least {_num(bounds['ge'])}"
        )
    elif lo_key == "gt":
        text = f"must be greater than {_num(bounds['gt'])}"
    elif hi_key == "le":
        text = f"must be at most {_num(bounds['le'])}"
    else:
        text = f"must be less than {_num(bounds['lt'])}"
    return text + (" (or null)" if nullable else "")


def _bounds(info: Any) -> dict[str, Any]:
    out = {}
    for m in getattr(info, "metadata", ()):
        for name, cls in (
            ("ge", annotated_types.Ge),
            ("gt", annotated_types.Gt),
            ("le", annotated_types.Le),
            ("lt", annotated_types.Lt),
        ):
            if isinstance(m, cls):
                out[name] = getattr(m, name)
    return out


def _line(err: dict[str, Any], root: type, prefix: str) -> list[str]:
    loc = tuple(err["loc"])
    key = ".".join(p for p in (prefix, _dotted(loc)) if p) or "config"
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    problem = ctx.get("error")
    if isinstance(problem, Problems):
        at = f"{key}." if loc or prefix else ""
        return [f"{at}{k}: {m.replace('{at}', at)}" for k, m in problem.problems]
    ann, info = _walk(root, loc)
    leaf, nullable = _unwrap(ann)
    if kind == "extra_forbidden":
        parent, _ = _unwrap(_walk(root, loc[:-1])[0])
        allowed = sorted(getattr(parent, "model_fields", {}))
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"{key}: unknown key; allowed keys here: {', '.join(allowed)}{hint}"]
    if kind == "literal_error":
        args = typing.get_args(leaf) if typing.get_origin(leaf) is Literal else ()
        allowed = ", ".join(repr(a) for a in args) or ctx.get("expected", "")
        return [f"{key}: {value!r} is not allowed; allowed values: {allowed}"]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return [f"{key}: {_range_text(_bounds(info) or ctx, nullable)}, got {value!r}"]
    if kind in ("too_short", "string_too_short"):
        item = _unwrap(typing.get_args(leaf)[0])[0] if typing.get_origin(leaf) is list else None
        if typing.get_origin(item) is Literal:
            fix = "name at least one of " + ", ".join(repr(a) for a in typing.get_args(item))
        else:
            fix = f"give a value ({info.description})" if info else "give a value"
        return [f"{key}: must not be empty, got {value!r}; {fix}"]
    if kind == "string_pattern_mismatch":
        doc = getattr(info, "description", "")
        return [f"{key}: {value!r} does not match {ctx.get('pattern')}; {doc}"]
    if kind in _TYPE_WORDS:
        words = _TYPE_WORDS[kind] + (" or null" if nullable else "")
        hint = ""
        if kind == "float_type" and isinstance(value, str):
            try:
                float(value)
                hint = "; YAML reads a number such as 1e-4 as text: write 1.0e-4"
            except ValueError:
                pass
        return [f"{key}: {words}, got {value!r}{hint}"]
    message = str(problem) if problem is not None else err["msg"]
    return [f"{key}: {message}, got {value!r}"]


def describe(error: ValidationError, root: type | None = None, prefix: str = "") -> str:
    """One line per problem of a pydantic ValidationError: ``<dotted.key>: <what>, got ...``."""
    root = root or Config
    lines = []
    for err in error.errors(include_url=False):
        lines.extend(_line(err, root, prefix))
    return "\n".join(dict.fromkeys(lines))


@functools.cache
def _homes() -> dict[type, list[str]]:
    out: dict[type, list[str]] = {}

    def visit(cls: type, at: str) -> None:
        out.setdefault(cls, []).append(at)
        for name, info in cls.model_fields.items():
            ann, _ = _unwrap(info.annotation)
            if typing.get_origin(ann) is dict:
                ann, name = typing.get_args(ann)[1], f"{name}.<name>"
            if isinstance(ann, type) and issubclass(ann, Section):
                visit(ann, f"{at}.{name}" if at else name)

    visit(Config, "")
    return out


def _home(cls: type) -> str:
    """The dotted key of a section that sits in one place (else its class name)."""
    homes = _homes().get(cls, [])
    return homes[0] if len(homes) == 1 else cls.__name__


# --------------------------------------------------------------------------- loading
def config_from_dict(data: dict[str, Any] | None) -> Config:
    """The checked Config of a (merged) mapping; defaults fill what it does not give."""
    try:
        return Config.model_validate({} if data is None else data)
    except ValidationError as e:
        raise ConfigError(describe(e, Config)) from None


def load_config(*paths: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load and merge YAML files (later ones win), apply overrides, check, return a Config."""
    merged: dict[str, Any] = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        try:
            # JSON by its own parser: YAML 1.1 reads JSON's 1e-05 as text (stage slices hold it)
            text = p.read_text()
            data = (json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)) or {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON: {e}") from e
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
        raise ConfigError("\n".join(f"{where}: {line}" for line in str(e).splitlines())) from None
    # a stage's slice (no run name: written by the workflow) records only its sections
    cfg._given_keys = None if "run" in merged else list(merged)
    return cfg


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


# --------------------------------------------------------------------------- schema
def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every ``$ref`` replaced by its definition (a reader sees each key
    where it sits) and without pydantic's titles."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    if "$ref" in node:
        out = _inline(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    for k, v in node.items():
        if k not in ("$ref", "$defs") and not (k == "title" and isinstance(v, str)):
            out[k] = _inline(v, defs)
    return out


def json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of the config: descriptions, defaults, ranges, and the
    keys a choice requires (``allOf`` of ``if``/``then``). For editors and readers: loading
    checks with the models themselves."""
    schema = Config.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ume config",
        "description": "generated from ume/config.py by `python -m ume schema`; do not edit",
    } | _inline(schema, schema.get("$defs", {}))


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, default=str) + "\n"
