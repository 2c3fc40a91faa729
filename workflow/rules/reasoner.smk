# The Reasoner: cold-start SFT on annotated T-CoTs, then EG-RL (GRPO guided by the frozen
# Embedder). Both rules always exist; the switches (sft.enabled, egrl.enabled) decide which of
# them the DAG asks for (ume.plan): EG-RL starts from the SFT Reasoner or from the base one,
# and the final Reasoner (what evaluation takes by default) is the newest enabled stage's.
# Checkpoints live outside the output folders (a failed job's outputs are removed; resumption
# needs its checkpoints).
SFT_SHELL = (
    "python -m ume sft --config {input.config} --pairs {input.pairs} --reasoner {input.reasoner}"
    " --out {output} --checkpoint-dir {params.checkpoints}"
    + LAUNCH_ARGS
    + " 2> {log}"
)
EGRL_SHELL = (
    "python -m ume egrl --config {input.config} --rl {input.rl} {params.models} --out {output}"
    " --checkpoint-dir {params.checkpoints} --tcot-lengths {input.lengths}"
    + LAUNCH_ARGS
    + " 2> {log}"
)


rule sft_reasoner:
    """Cold-start SFT of the base Reasoner on the annotated T-CoTs of both pair sides."""
    input:
        config=config_of("sft"),
        pairs=plan.sft_pairs(
            CFG,
            annotated=rules.relevance_filter.output.filtered,
            contrastive=rules.split_data.output.contrastive,
        ),
        reasoner=plan.base_model(CFG, "reasoner"),
        launch=LAUNCH_CONFIG,
    output:
        directory(REASONER_SFT),
    params:
        checkpoints=f"{RUN_DIR}/checkpoints/reasoner-sft",
    log:
        log_of("sft_reasoner"),
    benchmark:
        timing_of("sft_reasoner")
    resources:
        nodes=1,
        gpus=size(8, 0),
        cpus_per_task=size(32, 2),
        mem_mb=size(256000, 6000),
        runtime=size(1440, 20),
    conda:
        GPU_ENV
    shell:
        SFT_SHELL


rule sft:
    """Target: the SFT Reasoner."""
    input:
        rules.sft_reasoner.output,


rule egrl:
    """EG-RL: GRPO of the Reasoner, rewards from the frozen Embedder and Discriminator."""
    input:
        config=config_of("egrl"),
        rl=rules.split_data.output.rl,
        reasoner=plan.pre_egrl_reasoner(CFG),
        embedder=plan.egrl_embedder(CFG),
        discriminator=plan.egrl_discriminator(CFG),
        lengths=rules.annotate_tcot.output.lengths,
        launch=LAUNCH_CONFIG,
    output:
        directory(REASONER_RL),
    params:
        models=lambda w, input: plan.cli_args(
            reasoner=input.reasoner,
            embedder=input.embedder,
            discriminator=input.discriminator,
        ),
        checkpoints=f"{RUN_DIR}/checkpoints/reasoner-rl",
    log:
        log_of("egrl"),
    benchmark:
        timing_of("egrl")
    resources:
        nodes=1,
        gpus=size(8, 0),
        cpus_per_task=size(32, 2),
        mem_mb=size(512000, 6000),
        runtime=size(2880, 30),
    conda:
        GPU_ENV
    shell:
        EGRL_SHELL


rule reasoner:
    """Target: the final Reasoner (EG-RL, else SFT, else base, as the switches say)."""
    input:
        plan.final_reasoner(CFG),
