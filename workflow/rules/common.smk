# Paths and helpers shared by every rule file. The decisions (which models, tasks and stages a
# config asks for) are functions of ume/plan.py, tested in tests/unit/test_plan.py; a rule file
# holds paths, resources, logs and environments, and calls the plan for the rest.
import os

RUN_DIR = plan.run_dir(CFG)  # results/<run>: every artifact of the run lies under it
# Conda environments (--sdm conda), relative to this folder: light rules run in the CPU one;
# launched stages that load models in GPU_ENV, which ume.plan.conda_env makes the GPU one
# (CUDA torch, pinned TRL/accelerate) for real backbones and the CPU one for the tiny models.
CPU_ENV = f"../../{plan.conda_env(CFG, 'cpu')}"
GPU_ENV = f"../../{plan.conda_env(CFG, 'gpu')}"


def log_of(name):
    return f"{RUN_DIR}/logs/{name}.log"


def timing_of(name):
    """Snakemake's `benchmark:` file of a rule (wall time, memory); the word "benchmarks" is
    kept for the performance scripts of benchmarks/."""
    return f"{RUN_DIR}/timings/{name}.tsv"


def config_of(stage):
    return f"{RUN_DIR}/config/{stage}.json"


def size(real, tiny):
    """A resource value for real backbones, or for the tiny models (CPU, small)."""
    return plan.sized(CFG, real, tiny)


LEADERBOARD = f"{RUN_DIR}/leaderboard"


def leaderboard_csv(suite, kind):
    """A CSV table of the leaderboard (kind: categories | tasks), in the report by suite."""
    return report(
        f"{LEADERBOARD}/{suite}_{kind}.csv",
        category="Leaderboard",
        subcategory="CSV tables",
        labels={"suite": suite, "table": kind},
    )


# Model records and folders (their layout is ume.plan's, which chooses among them).
INIT_MODEL = f"{RUN_DIR}/{plan.INIT_MODEL}"  # {role} left to fill
BASE_MODEL = f"{RUN_DIR}/{plan.BASE_MODEL}"  # {role} left to fill
EMBEDDER_TRAINED = plan.embedder_model(CFG, "trained")
REASONER_SFT = plan.reasoner_model(CFG, "sft")
REASONER_RL = plan.reasoner_model(CFG, "egrl")

# Launched rules (GPU stages; docs/cluster.md) run through ume/launch: in-process, or as a
# SLURM job when launch.launcher is slurm (the slurm profile). The launch config is an ancient()
# input, so switching launcher or partition never reruns a stage; the rule's resources and log
# go to the CLI (messages name the job after its log: logs/<rule>.log -> <rule>). A launched
# rule declares resources nodes, gpus (per node), cpus_per_task, mem_mb and runtime (minutes),
# takes `launch=LAUNCH_CONFIG` as input and ends its shell command with LAUNCH_ARGS.
LAUNCH_CONFIG = ancient(config_of("launch"))
LAUNCH_ARGS = (
    " --launch {input.launch} --log {log} --resources nodes={resources.nodes}"
    " gpus={resources.gpus} cpus_per_task={resources.cpus_per_task}"
    " mem_mb={resources.mem_mb} runtime={resources.runtime}"
)
