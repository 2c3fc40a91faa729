"""Task registry: every MMEB-V2 task, every UVRB dataset, and the synthetic suite.

The :class:`TaskSpec` dataclass is the contract the loaders, the scorer and the aggregator
share. ``name`` is the name a task is *scored and reported* under (the key in the MMEB
leaderboard's submission JSON, e.g. ``"ViDoSeek-page-fixed"``); ``data_name`` is the name
the data is stored under when it differs (``"ViDoSeek-page"``); ``aliases`` are other
spellings found in published tables (``"ViDoRe_energy"`` for
``"ViDoRe_syntheticDocQA_energy"``). :func:`get_task` accepts any of them.

Sources: task lists, categories and metrics from the benchmarks' own code and papers (see
``docs/benchmarks.md``); category labels as in the published MMEB-V2 table
(``ume/report/reference/mmeb_v2_categories_published.csv``); ranking mode and query/target
instructions from VLM2Vec's evaluation configs and dataset parsers
(``experiments/public/eval/*.yaml``, ``src/data/eval_dataset/*.py``). Image tasks carry
their instructions per row in the data (``qry_inst``/``tgt_inst``), so their
``instruction`` is empty and ``instruction_source`` is ``"data"``.

Where each task's files are (``folder``, ``subsets``, ``split``, ``frames``) is VLM2Vec's own
table of local paths (``src/constant/dataset_hflocal_path.py``: ``(folder, subset, split)``,
the layout ``experiments/public/data/download_data.sh`` makes from a clone of
``TIGER-Lab/MMEB-V2``); frame folders are its eval configs' ``frame_root``; ``hf_repo`` is
where the annotations come from (``src/constant/dataset_hf_path.py``), for the download
hints of ``python -m ume check-data``. Where that table and ``docs/benchmarks.md`` of the
shared docs differ, the table wins (e.g. ViDoSeek-page lives in ``visdoc-tasks/ViDoSeek-page``,
MMLongBench-page in ``visdoc-tasks/MMLongBench``; the ViDoRe-V2 ``_multilingual`` tasks read
the whole repo folder without the suffix).

>>> get_task("mmeb", "ImageNet-1K").metric
'hit@1'
>>> get_task("mmeb", "ViDoSeek-page").name
'ViDoSeek-page-fixed'
>>> len(tasks("mmeb")), len(tasks("uvrb"))
(78, 16)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ume.errors import ConfigError


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
    # --- added fields (all defaulted) ---
    data_name: str = ""  # name the data is stored under (HF config / dataset_name); "" -> name
    # --- where the files are, relative to the suite root (ume.suites.base.Source) ---
    folder: str = ""  # annotation folder (VLM2Vec dataset_hflocal_path.py); "" -> layout default
    subsets: tuple[str, ...] = field(default=())  # HF subsets (sub-folders) read and concatenated
    split: str = "test"  # HF split: files <split>-*.parquet
    frames: str = ""  # video frame folder (VLM2Vec frame_root); "" -> layout default
    language: str = ""  # BEIR: only queries of this language ("" -> all)
    hf_repo: str = ""  # where the annotations are downloaded from (dataset_hf_path.py)
    aliases: tuple[str, ...] = field(default=())  # other spellings in published tables
    instruction: str = ""  # query instruction (VLM2Vec); "" when the data carries it per row
    target_instruction: str = ""  # candidate-side instruction (VLM2Vec), "" if none
    instruction_source: str = ""  # "data" | "VLM2Vec <file>" | ""
    recall_style: str = "fraction"  # "fraction" (|hits|/|rel|) | "hit" (UVRB: any positive)

    def __post_init__(self) -> None:
        if not self.data_name:
            object.__setattr__(self, "data_name", self.name)
        if self.ranking not in ("local", "global"):
            raise ConfigError(f"TaskSpec {self.name!r}: ranking must be 'local' or 'global'")
        if self.recall_style not in ("fraction", "hit"):
            raise ConfigError(f"TaskSpec {self.name!r}: recall_style must be 'fraction' or 'hit'")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this task is known by: scoring name, data name, aliases."""
        out = [self.name]
        for n in (self.data_name, *self.aliases):
            if n not in out:
                out.append(n)
        return tuple(out)


# ---------------------------------------------------------------------------------------
# MMEB-V2
# ---------------------------------------------------------------------------------------

#: MMEB category labels, in the published table's column order, with their modality.
MMEB_CATEGORIES: dict[str, str] = {
    "I-CLS": "image",
    "I-QA": "image",
    "I-RET": "image",
    "I-GD": "image",
    "V-CLS": "video",
    "V-QA": "video",
    "V-RET": "video",
    "V-MRET": "video",
    "VDRv1": "visdoc",
    "VDRv2": "visdoc",
    "VR": "visdoc",
    "OOD": "visdoc",
}
#: Modality -> published column label.
MMEB_MODALITY_COLUMNS: dict[str, str] = {"image": "Image", "video": "Video", "visdoc": "VisDoc"}
#: Other spellings of category labels (the per-task published table uses these).
MMEB_CATEGORY_ALIASES: dict[str, str] = {
    "I-VG": "I-GD",
    "V-MR": "V-MRET",
    "VD-Vidore-V1": "VDRv1",
    "VD-Vidore-V2": "VDRv2",
    "VD-VisRAG": "VR",
    "VD-OOD": "OOD",
    "VD-V1": "VDRv1",
    "VD-V2": "VDRv2",
}

_V2V = "VLM2Vec src/data/eval_dataset/"
#: Where the image tasks' annotations come from (one HF subset per task, split test).
MMEB_IMAGE_REPO = "ziyjiang/MMEB_Test_Instruct"
#: The MMEB-V2 repo whose clone holds the media (image-tasks/, video-tasks/frames/).
MMEB_REPO = "TIGER-Lab/MMEB-V2"


def _image(names: str, category: str) -> list[TaskSpec]:
    return [
        TaskSpec(
            name=n,
            suite="mmeb",
            modality="image",
            category=category,
            layout="mmeb_image",
            ranking="local",
            metric="hit@1",
            folder="image-tasks",
            subsets=(n,),
            hf_repo=MMEB_IMAGE_REPO,
            instruction_source="data",
        )
        for n in names.split()
    ]


_IMAGE = [
    *_image(
        "ImageNet-1K N24News HatefulMemes VOC2007 SUN397 Place365 ImageNet-A ImageNet-R "
        "ObjectNet Country211",
        "I-CLS",
    ),
    *_image(
        "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W ScienceQA VizWiz GQA TextVQA",
        "I-QA",
    ),
    *_image(
        "VisDial CIRR VisualNews_t2i VisualNews_i2t MSCOCO_t2i MSCOCO_i2t NIGHTS WebQA "
        "FashionIQ Wiki-SS-NQ OVEN EDIS",
        "I-RET",
    ),
    *_image("MSCOCO RefCOCO RefCOCO-Matching Visual7W-Pointing", "I-GD"),
]


def _video(
    name: str,
    category: str,
    layout: str,
    ranking: str,
    frames: str,
    instruction: str,
    source: str,
    *,
    data_name: str = "",
    subsets: tuple[str, ...] = (),
    split: str = "test",
    hf_repo: str = "",
    target_instruction: str = "",
    aliases: tuple[str, ...] = (),
) -> TaskSpec:
    folder = data_name or name
    return TaskSpec(
        name=name,
        suite="mmeb",
        modality="video",
        category=category,
        layout=layout,
        ranking=ranking,
        metric="hit@1",
        data_name=data_name,
        folder=f"video-tasks/{folder}",
        subsets=subsets,
        split=split,
        frames=f"video-tasks/frames/{frames}",
        hf_repo=hf_repo or f"VLM2Vec/{folder}",
        aliases=aliases,
        instruction=instruction,
        target_instruction=target_instruction,
        instruction_source=_V2V + source,
    )


# Video classification: VLM2Vec ranks each video against the dataset's full label list
# (eval_type global), except SmthSmthV2, whose rows carry their own candidate labels
# (neg_text, the positive among them).
_VCLS_INST = {
    "K700": "Recognize the category of the video content.",
    "SmthSmthV2": "What actions or object interactions are being performed by the person in the video?",
    "HMDB51": "What actions or objects interactions are the person in the video doing?",
    "UCF101": "What activities or sports are being performed by the person in the video?",
    "Breakfast": "Recognize the breakfast type that the person is cooking in the video. ",
}
_VCLS_FRAMES = {"K700": "K700", "SmthSmthV2": "SSv2", "HMDB51": "HMDB51", "UCF101": "UCF101"}
_VCLS = [
    _video(
        n,
        "V-CLS",
        "mmeb_video_cls",
        "local" if n == "SmthSmthV2" else "global",
        f"video_cls/{_VCLS_FRAMES.get(n, n)}",
        inst,
        "ssv2_dataset.py" if n == "SmthSmthV2" else "video_classification_utils.py",
        data_name="Kinetics-700" if n == "K700" else "",
        aliases=("Kinetics-700",) if n == "K700" else (),
    )
    for n, inst in _VCLS_INST.items()
]

_VQA_INST = (
    "Given a video and a question, select the most accurate answer from the provided "
    "candidates. Return only the exact text of your chosen answer. Question: "
)
#: MVBench's subsets (VLM2Vec mvbench_dataset.py ``subset_meta``), each a sub-folder of the
#: local MVBench folder; VLM2Vec concatenates them and its frames are ``<subset>/<video>``.
MVBENCH_SUBSETS: tuple[str, ...] = (
    "episodic_reasoning", "action_sequence", "action_prediction", "action_antonym",
    "fine_grained_action", "unexpected_action", "object_existence", "object_interaction",
    "object_shuffle", "moving_direction", "action_localization", "scene_transition",
    "action_count", "moving_count", "moving_attribute", "state_change", "fine_grained_pose",
    "character_order", "egocentric_navigation", "counterfactual_inference",
)  # fmt: skip
_VQA = [
    _video("MVBench", "V-QA", "mmeb_video_qa", "local", "video_qa/MVBench", _VQA_INST,
           "mvbench_dataset.py", subsets=MVBENCH_SUBSETS, split="train"),
    _video("Video-MME", "V-QA", "mmeb_video_qa", "local", "video_qa/Video-MME", _VQA_INST,
           "videomme_dataset.py"),
    _video("NExTQA", "V-QA", "mmeb_video_qa", "local", "video_qa/NExTQA", _VQA_INST,
           "nextqa_dataset.py", subsets=("MC",)),
    _video("EgoSchema", "V-QA", "mmeb_video_qa", "local", "video_qa/EgoSchema", _VQA_INST,
           "egoschema_dataset.py", subsets=("Subset",)),
    _video("ActivityNetQA", "V-QA", "mmeb_video_qa", "local", "video_qa/ActivityNetQA",
           _VQA_INST, "activitynetqa_dataset.py"),
]  # fmt: skip

_VIDEO_TGT = "Understand the content of the provided video."
_VRET_INST = {
    "DiDeMo": ("Find a video that includes the following described scenes:", "didemo"),
    "MSR-VTT": ("Find a video that contains the following visual content:", "msrvtt"),
    "MSVD": ("Find the video snippet that corresponds to the given summary:", "msvd"),
    "VATEX": ("Select a video that fits the description provided:", "vatex"),
    "YouCook2": (
        "Find a video that demonstrates the following action while making a recipe:",
        "youcook2",
    ),
}
_VRET = [
    _video(
        n,
        "V-RET",
        "mmeb_video_ret",
        "global",
        f"video_ret/{n}",
        inst,
        f"{f}_dataset.py",
        subsets=("test_1k",) if n == "MSR-VTT" else (),
        split="val" if n == "YouCook2" else "test",
        # dataset_hf_path.py: "VLM2Vec/YouCook2 ... HF version compatibility issue"
        hf_repo="lmms-lab/YouCook2" if n == "YouCook2" else "",
        target_instruction=_VIDEO_TGT,
    )
    for n, (inst, f) in _VRET_INST.items()
]

_MRET_INST = "Find the clip that corresponds to the described scene in the given video:"
_VMRET = [
    _video("QVHighlight", "V-MRET", "mmeb_video_mret", "local", "video_mret/QVHighlight",
           _MRET_INST, "moment_retrieval_datasets.py", target_instruction=_VIDEO_TGT),
    _video("Charades-STA", "V-MRET", "mmeb_video_mret", "local", "video_mret/Charades_STA",
           _MRET_INST, "moment_retrieval_datasets.py", target_instruction=_VIDEO_TGT),
    # MomentSeeker's instruction depends on the query type (MOMENTSEEKER_INSTRUCTIONS); the
    # loader picks it per row, this is the text-only one.
    _video("MomentSeeker", "V-MRET", "mmeb_video_mret", "local", "video_mret/MomentSeeker",
           "Find the clip that corresponds to the given text:", "momentseeker_dataset.py",
           target_instruction="Understand the content of the provided video clip."),
]  # fmt: skip

#: MomentSeeker query instructions by query type (VLM2Vec momentseeker_dataset.py).
MOMENTSEEKER_INSTRUCTIONS: dict[str, str] = {
    "text": "Find the clip that corresponds to the given text:",
    "image": "Select the video clip that aligns with the given text and image:",
    "video": "Find the clip that corresponds to the given sentence and video segment:",
}

_DOC_INST = "Find a document image that matches the given query:"
_DOC_TGT = "Understand the content of the provided document image."


def _visdoc(
    name: str,
    category: str,
    folder: str,
    hf_repo: str,
    *,
    data_name: str = "",
    aliases: tuple[str, ...] = (),
    parser: str = "vidore",
    split: str = "test",
) -> TaskSpec:
    return TaskSpec(
        name=name,
        suite="mmeb",
        modality="visdoc",
        category=category,
        layout="beir",
        ranking="global",
        metric="ndcg_linear@5",
        data_name=data_name,
        folder=f"visdoc-tasks/{folder}",
        split=split,
        hf_repo=hf_repo,
        aliases=aliases,
        instruction=_DOC_INST,
        target_instruction=_DOC_TGT,
        instruction_source=_V2V + f"{parser}_dataset.py",
    )


_VIDORE_V1 = {  # task suffix -> HF repo name (vidore/<repo>), also the local folder
    "arxivqa": "arxivqa_test_subsampled_beir",
    "docvqa": "docvqa_test_subsampled_beir",
    "infovqa": "infovqa_test_subsampled_beir",
    "tabfquad": "tabfquad_test_subsampled_beir",
    "tatdqa": "tatdqa_test_beir",
    "shiftproject": "shiftproject_test_beir",
}
_SYNTH_DOCQA = ("artificial_intelligence", "energy", "government_reports", "healthcare_industry")
# ViDoRe-V2: the `_multilingual` tasks read the whole repo; the plain ones (not among the
# 78 tasks) would read its `english` queries (TaskSpec.language).
_VIDORE_V2 = {
    "ViDoRe_esg_reports_human_labeled_v2": "esg_reports_human_labeled_v2",
    "ViDoRe_biomedical_lectures_v2_multilingual": "biomedical_lectures_v2",
    "ViDoRe_economics_reports_v2_multilingual": "economics_reports_v2",
    "ViDoRe_esg_reports_v2_multilingual": "esg_reports_v2",
}
_VISDOC = [
    *(_visdoc(f"ViDoRe_{n}", "VDRv1", r, f"vidore/{r}") for n, r in _VIDORE_V1.items()),
    *(
        _visdoc(
            f"ViDoRe_syntheticDocQA_{n}",
            "VDRv1",
            f"syntheticDocQA_{n}_test_beir",
            f"vidore/syntheticDocQA_{n}_test_beir",
            aliases=(f"ViDoRe_{n}",),
        )
        for n in _SYNTH_DOCQA
    ),
    *(_visdoc(n, "VDRv2", r, f"vidore/{r}") for n, r in _VIDORE_V2.items()),
    *(
        _visdoc(
            f"VisRAG_{n}",
            "VR",
            f"VisRAG-Ret-Test-{n}",
            f"openbmb/VisRAG-Ret-Test-{n}",
            parser="visrag",
            split="train",
        )
        for n in ("ArxivQA", "ChartQA", "MP-DocVQA", "SlideVQA", "InfoVQA", "PlotQA")
    ),
    # The page-level OOD tasks are scored on the fixed splits (the "-fixed" repos); VLM2Vec's
    # local table keeps them in the folders ViDoSeek-page and MMLongBench.
    _visdoc("ViDoSeek-page-fixed", "OOD", "ViDoSeek-page", "VLM2Vec/ViDoSeek-page-fixed",
            data_name="ViDoSeek-page"),
    _visdoc("ViDoSeek-doc", "OOD", "ViDoSeek", "VLM2Vec/ViDoSeek"),
    _visdoc("MMLongBench-page-fixed", "OOD", "MMLongBench", "VLM2Vec/MMLongBench-page-fixed",
            data_name="MMLongBench-page"),
    _visdoc("MMLongBench-doc", "OOD", "MMLongBench-doc", "VLM2Vec/MMLongBench-doc"),
]  # fmt: skip

#: The two OOD tasks whose published numbers exist on two splits (old and fixed).
OOD_SPLIT_TASKS: tuple[str, ...] = ("ViDoSeek-page-fixed", "MMLongBench-page-fixed")

MMEB_TASKS: tuple[TaskSpec, ...] = (*_IMAGE, *_VCLS, *_VQA, *_VRET, *_VMRET, *_VISDOC)

# ---------------------------------------------------------------------------------------
# UVRB
# ---------------------------------------------------------------------------------------

#: UVRB column order as published: the six averaged columns first, then S, T, PR.
UVRB_MAIN_COLUMNS: tuple[str, ...] = ("TXT", "CMP", "VIS", "CG", "FG", "LC")
UVRB_COLUMNS: tuple[str, ...] = (*UVRB_MAIN_COLUMNS, "S", "T", "PR")

_UVRB_ROWS = [
    # name, category, groups, metric
    ("MSRVTT", "TXT", ("CG",), "recall@1"),
    ("DiDeMo", "TXT", ("CG",), "recall@1"),
    ("CRB-G", "TXT", ("CG",), "recall@1"),
    ("CRB-S", "TXT", ("FG", "S"), "recall@1"),
    ("VDC-O", "TXT", ("FG", "S"), "recall@1"),
    ("CRB-T", "TXT", ("FG", "T"), "recall@1"),
    ("CMRB", "TXT", ("FG", "T"), "recall@10"),
    ("DREAM-E", "TXT", ("FG", "PR"), "recall@1"),
    ("LoVR-TH", "TXT", ("FG", "PR"), "recall@10"),
    ("PEV-K", "TXT", ("FG", "PR"), "recall@1"),
    ("LoVR-V", "TXT", ("LC",), "recall@1"),
    ("VDC-D", "TXT", ("LC",), "recall@1"),
    ("MS-TI", "CMP", (), "precision@1"),
    ("MS-TV", "CMP", (), "precision@1"),
    ("MSRVTT-I2V", "VIS", (), "recall@1"),
    ("LoVR-C2V", "VIS", (), "recall@1"),
]

UVRB_TASKS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(
        name=n,
        suite="uvrb",
        modality="video",
        category=cat,
        layout="uvrb",
        ranking="global",
        metric=metric,
        groups=groups,
        folder=n,
        hf_repo="Alibaba-NLP/UVRB",
        recall_style="hit",
    )
    for n, cat, groups, metric in _UVRB_ROWS
)

# ---------------------------------------------------------------------------------------
# Synthetic suite (the embedded default's; written by ume.suites.synth.writer in the real layouts)
# ---------------------------------------------------------------------------------------


def _synth(name, modality, category, layout, ranking, metric, groups=(), **kw) -> TaskSpec:
    return TaskSpec(
        name=name,
        suite="synth",
        modality=modality,
        category=category,
        layout=layout,
        ranking=ranking,
        metric=metric,
        groups=groups,
        **kw,
    )


#: The synthetic suite: every MMEB-V2 category and the UVRB groups, in the real layouts.
SYNTH_TASKS: list[TaskSpec] = [
    _synth("SynthCLS", "image", "I-CLS", "mmeb_image", "local", "hit@1"),
    _synth("SynthVQA", "image", "I-QA", "mmeb_image", "local", "hit@1"),
    _synth("SynthT2I", "image", "I-RET", "mmeb_image", "local", "hit@1"),
    _synth("SynthI2T", "image", "I-RET", "mmeb_image", "local", "hit@1"),
    _synth("SynthGrounding", "image", "I-GD", "mmeb_image", "local", "hit@1"),
    _synth("SynthVideoCLS", "video", "V-CLS", "mmeb_video_cls", "global", "hit@1"),
    _synth("SynthVideoQA", "video", "V-QA", "mmeb_video_qa", "local", "hit@1"),
    _synth("SynthVideoRET", "video", "V-RET", "mmeb_video_ret", "global", "hit@1"),
    _synth("SynthMomentRET", "video", "V-MRET", "mmeb_video_mret", "local", "hit@1"),
    _synth("SynthDocRET", "visdoc", "VDRv1", "beir", "global", "ndcg_linear@5"),
    _synth(
        "SynthUVRB-CG", "video", "TXT", "uvrb", "global", "recall@1", ("CG",), recall_style="hit"
    ),
    _synth(
        "SynthUVRB-S", "video", "TXT", "uvrb", "global", "recall@1", ("FG", "S"), recall_style="hit"
    ),
    _synth(
        "SynthUVRB-T", "video", "TXT", "uvrb", "global", "recall@1", ("FG", "T"), recall_style="hit"
    ),
    _synth(
        "SynthUVRB-LC", "video", "TXT", "uvrb", "global", "recall@1", ("LC",), recall_style="hit"
    ),
    _synth("SynthUVRB-CMP", "video", "CMP", "uvrb", "global", "precision@1", recall_style="hit"),
    _synth("SynthUVRB-VIS", "video", "VIS", "uvrb", "global", "recall@1", recall_style="hit"),
]

# ---------------------------------------------------------------------------------------
# Suite registry
# ---------------------------------------------------------------------------------------

_SUITES: dict[str, tuple[TaskSpec, ...]] = {}


def register_suite(suite: str, specs: Iterable[TaskSpec], *, replace: bool = False) -> None:
    """Register (or, with ``replace=True``, re-register) a suite of tasks.

    Re-registering identical specs is a no-op, so a module may call this at import time.
    Raises :class:`ConfigError` on a spec of another suite, duplicate names, or an attempt
    to change an existing suite without ``replace=True``.
    """
    specs = tuple(specs)
    if not specs:
        raise ConfigError(f"register_suite({suite!r}): no tasks given")
    seen: dict[str, str] = {}
    for s in specs:
        if not isinstance(s, TaskSpec):
            raise ConfigError(f"register_suite({suite!r}): {s!r} is not a TaskSpec")
        if s.suite != suite:
            raise ConfigError(
                f"register_suite({suite!r}): task {s.name!r} has suite={s.suite!r}; "
                f"set TaskSpec.suite to {suite!r}"
            )
        for n in s.names:
            if n in seen and seen[n] != s.name:
                raise ConfigError(
                    f"register_suite({suite!r}): name {n!r} used by both {seen[n]!r} and {s.name!r}"
                )
            seen[n] = s.name
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"register_suite({suite!r}): duplicate task names")
    old = _SUITES.get(suite)
    if old is not None and old != specs and not replace:
        raise ConfigError(
            f"suite {suite!r} is already registered with different tasks; "
            "pass replace=True to override it"
        )
    _SUITES[suite] = specs


register_suite("mmeb", MMEB_TASKS)
register_suite("uvrb", UVRB_TASKS)
register_suite("synth", SYNTH_TASKS)

#: Tasks built so that the evidence decides: grounding (which region holds the named
#: object), same-shape distractors (VQA: the named shape also stands elsewhere in another
#: colour), moments (which clip holds the event). Full input should beat no_evidence there.
EVIDENCE_TASKS: tuple[str, ...] = ("SynthGrounding", "SynthVQA", "SynthMomentRET")


def suites() -> tuple[str, ...]:
    """Names of the registered suites."""
    return tuple(_SUITES)


def _ensure(suite: str) -> None:
    if suite not in _SUITES:
        raise ConfigError(f"unknown task suite {suite!r}; registered suites: {sorted(_SUITES)}")


def tasks(suite: str) -> tuple[TaskSpec, ...]:
    """All tasks of ``suite`` in the benchmark's order."""
    _ensure(suite)
    return _SUITES[suite]


def get_task(suite: str, name: str) -> TaskSpec:
    """The task of ``suite`` called ``name`` (scoring name, data name or alias)."""
    for s in tasks(suite):
        if name in s.names:
            return s
    raise ConfigError(
        f"unknown task {name!r} in suite {suite!r}; known tasks: "
        + ", ".join(s.name for s in tasks(suite))
    )


def find_task(suite: str, name: str) -> TaskSpec | None:
    """Like :func:`get_task` but returns ``None`` for an unknown name."""
    try:
        return get_task(suite, name)
    except ConfigError:
        return None


def canonical_category(label: str) -> str:
    """Map a published category label (``"I-VG"``, ``"VD-OOD"``) to the registry's."""
    return MMEB_CATEGORY_ALIASES.get(label, label)


def tasks_by_category(suite: str) -> dict[str, list[TaskSpec]]:
    """Ordered ``category -> tasks``; for UVRB also the ability groups (CG, FG, ...)."""
    out: dict[str, list[TaskSpec]] = {}
    if suite == "mmeb":
        out = {c: [] for c in MMEB_CATEGORIES}
    elif suite == "uvrb":
        out = {c: [] for c in UVRB_COLUMNS}
    for s in tasks(suite):
        out.setdefault(s.category, []).append(s)
        for g in s.groups:
            out.setdefault(g, []).append(s)
    return out
