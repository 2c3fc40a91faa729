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
    "data": ["seed", "data"],
    "benchmark": ["seed", "data"],
    "annotate": ["seed", "models", "annotate"],
    "filter": ["seed", "models", "annotate", "filter"],
    "split": ["seed", "split"],
}


def config_of(stage):
    return f"{R}/config/{stage}.json"
