# The Reasoner: cold-start SFT on annotated T-CoTs, then EG-RL (GRPO guided by the frozen
# Embedder). Each stage's rule exists only when it is enabled (sft.enabled, egrl.enabled), so
# the DAG follows the switches: EG-RL starts from the SFT Reasoner or from the base one, and
# evaluation takes the newest Reasoner there is. Checkpoints live outside the output folders
# (a failed job's outputs are removed; resumption needs its checkpoints).
# Paths and helpers: reasoner_common.smk.


include: "reasoner_common.smk"


if CFG.sft.enabled:

    rule sft_reasoner:
        """Cold-start SFT of the base Reasoner on the annotated T-CoTs of both pair sides."""
        input:
            config=config_of("sft"),
            pairs=sft_pairs,
            reasoner=REASONER_BASE,
            launch=LAUNCH_CONFIG,
        output:
            directory(REASONER_SFT),
        params:
            checkpoints=f"{R}/checkpoints/reasoner-sft",
        log:
            log_of("sft_reasoner"),
        benchmark:
            bench_of("sft_reasoner")
        resources:
            nodes=1,
            gpus=size(8, 0),
            cpus_per_task=size(32, 2),
            mem_mb=size(256000, 6000),
            runtime=size(1440, 20),
        conda:
            CPU_ENV
        shell:
            SFT_SHELL

    rule sft:
        """Target: the SFT Reasoner."""
        input:
            rules.sft_reasoner.output,


if CFG.egrl.enabled:

    rule egrl:
        """EG-RL: GRPO of the Reasoner, rewards from the frozen Embedder and Discriminator."""
        input:
            config=config_of("egrl"),
            rl=rules.split_data.output.rl,
            reasoner=EGRL_START,
            embedder=egrl_embedder,
            discriminator=egrl_discriminator,
            lengths=rules.annotate_tcot.output.lengths,
            launch=LAUNCH_CONFIG,
        output:
            directory(REASONER_RL),
        params:
            models=egrl_model_args,
            checkpoints=f"{R}/checkpoints/reasoner-rl",
        log:
            log_of("egrl"),
        benchmark:
            bench_of("egrl")
        resources:
            nodes=1,
            gpus=size(8, 0),
            cpus_per_task=size(32, 2),
            mem_mb=size(512000, 6000),
            runtime=size(2880, 30),
        conda:
            CPU_ENV
        shell:
            EGRL_SHELL


rule reasoner:
    """Target: the final Reasoner (EG-RL, else SFT, else base, as the switches say)."""
    input:
        REASONER_FINAL,
