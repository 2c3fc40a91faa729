# The Embedder: contrastive training (stage 2) of the base Embedder on the contrastive split.
# The output folder holds model/ (LoRA merged), backbone.json (what the Reasoner and evaluation
# rules read), curves.csv/png (loss and in-batch accuracy per step) and manifest.json.
# Checkpoints live outside it (a failed job's outputs are removed; resumption needs them).
TRAIN_EMBEDDER_SHELL = (
    "python -m ume train-embedder --config {input.config} --contrastive {input.contrastive}"
    " --datasets {input.datasets} --embedder {input.embedder} --out {output}"
    " --checkpoint-dir {params.checkpoints}"
    + LAUNCH_ARGS
    + " 2> {log}"
)


rule train_embedder:
    """Symmetric InfoNCE with gradient caching over single-dataset sub-batches (ume.train)."""
    input:
        config=config_of("train_embedder"),
        contrastive=rules.split_data.output.contrastive,
        datasets=rules.prepare_pairs.output.datasets,
        embedder=plan.base_model(CFG, "embedder"),
        launch=LAUNCH_CONFIG,
    output:
        directory(EMBEDDER_TRAINED),
    params:
        checkpoints=f"{RUN_DIR}/checkpoints/train_embedder",
    log:
        log_of("train_embedder"),
    benchmark:
        timing_of("train_embedder")
    resources:
        nodes=1,
        gpus=size(8, 0),
        cpus_per_task=size(32, 1),
        mem_mb=size(256000, 4000),
        runtime=size(2880, 15),
    conda:
        GPU_ENV
    shell:
        TRAIN_EMBEDDER_SHELL


rule embedder:
    """Target: the trained Embedder."""
    input:
        rules.train_embedder.output,
