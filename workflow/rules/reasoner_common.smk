# Paths, model choice and commands of the Reasoner rules (reasoner.smk). No logic beyond paths.
REASONER_BASE = f"{R}/models/base/reasoner/backbone.json"
REASONER_SFT = f"{R}/models/reasoner-sft"
REASONER_RL = f"{R}/models/reasoner-rl"
if CFG.egrl.enabled:
    REASONER_FINAL = REASONER_RL
elif CFG.sft.enabled:
    REASONER_FINAL = REASONER_SFT
else:
    REASONER_FINAL = REASONER_BASE
EGRL_START = REASONER_SFT if CFG.sft.enabled else REASONER_BASE


def sft_pairs(wildcards):
    if CFG.sft.data == "annotated":
        return rules.relevance_filter.output.filtered
    return rules.split_data.output.contrastive


def egrl_embedder(wildcards):
    """The frozen Embedder (local backend, some pair-wise reward on): the trained one when
    the workflow trains it, else the base one."""
    g = CFG.egrl
    if g.embedder_backend != "local" or not (g.use_outcome_reward or g.use_process_reward):
        return []
    if rules.has("train_embedder"):
        return f"{R}/models/embedder"
    return f"{R}/models/base/embedder/backbone.json"


def egrl_discriminator(wildcards):
    g = CFG.egrl
    if g.discriminator_backend != "local" or not g.use_process_reward:
        return []
    return f"{R}/models/base/discriminator/backbone.json"


def egrl_model_args(wildcards, input):
    args = f"--reasoner {input.reasoner}"
    if input.embedder:
        args += f" --embedder {input.embedder}"
    if input.discriminator:
        args += f" --discriminator {input.discriminator}"
    return args


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
