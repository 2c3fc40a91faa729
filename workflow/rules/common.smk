# Paths and helpers shared by every rule file. No logic beyond paths.
import os

RUN = CFG.run
R = f"{CFG.results_dir}/{RUN}"
CPU_ENV = "../../envs/cpu.yaml"
# The synthetic benchmark is written when the run trains on it or evaluates on it.
WANT_SYNTH_BENCH = CFG.data.source == "synthetic" or "synth" in CFG.eval.suites
ROLES = ["embedder", "reasoner", "discriminator", "annotator"]


def log_of(name):
    return f"{R}/logs/{name}.log"


def bench_of(name):
    return f"{R}/benchmarks/{name}.tsv"


def annotator_input(wildcards):
    """The annotator model is needed only by the hf backend."""
    backends = {CFG.annotate.backend, CFG.filter.backend}
    return f"{R}/models/base/annotator/backbone.json" if "hf" in backends else []


def annotator_arg(wildcards, input):
    return f"--annotator {input.annotator}" if input.annotator else ""


STAGE_SECTIONS = {
    "models": ["seed", "models"],
    "pretrain": ["seed", "models", "pretrain"],
    "data": ["seed", "data"],
    "benchmark": ["seed", "data"],
    "annotate": ["seed", "models", "annotate"],
    "filter": ["seed", "models", "annotate", "filter"],
    "split": ["seed", "split"],
    "train_embedder": ["seed", "models", "split", "train_embedder"],
    "sft": ["seed", "models", "sft"],
    "egrl": ["seed", "models", "egrl"],
    "launch": ["launch"],
    "eval": ["seed", "models", "train_embedder", "eval"],
    "report": ["run", "results_dir", "models", "train_embedder", "eval"],
}


def config_of(stage):
    return f"{R}/config/{stage}.json"


# Launched rules (GPU stages; docs/cluster.md) run through ume/launch: in-process, or as a
# SLURM job when launch.launcher is slurm (the slurm profile). The launch config is an ancient()
# input, so switching launcher or partition never reruns a stage; the rule's resources and log
# go to the CLI (messages name the job after its log: logs/<rule>.log -> <rule>). A launched rule declares resources nodes, gpus (per node), cpus_per_task,
# mem_mb and runtime (minutes), takes `launch=LAUNCH_CONFIG` as input and ends its shell
# command with LAUNCH_ARGS.
LAUNCH_CONFIG = ancient(config_of("launch"))
LAUNCH_ARGS = (
    " --launch {input.launch} --log {log} --resources nodes={resources.nodes}"
    " gpus={resources.gpus} cpus_per_task={resources.cpus_per_task}"
    " mem_mb={resources.mem_mb} runtime={resources.runtime}"
)
# Real backbones (paper scale) or the tiny models of the embedded default: sizes jobs.
REAL_MODELS = any(getattr(CFG.models, role).source == "path" for role in ROLES)


def size(real, tiny):
    """A resource value for real backbones, or for the tiny models (CPU, small)."""
    return real if REAL_MODELS else tiny
